#!/usr/bin/env bash
# Seed corpora for the harnesses, made from real files (none are committed):
#   tests/fuzz/seeds.sh DIR      writes DIR/fuzz_<parser>/seed-*
# A harness reads its first byte as a mode (tests/fuzz/fuzz_*.c), so seeds carry it.
set -eu  # (no pipefail: zcat | head ends zcat early, by design)
cd "$(dirname "$0")/../.."
DIR=$1
FMNIST=/usr/share/datasets/fashion-mnist
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mk() { mkdir -p "$DIR/$1"; }
with_mode() { { printf "\\x$(printf %02x "$1")"; cat "$2"; } > "$3"; }
mk fuzz_idx; mk fuzz_cifar; mk fuzz_image; mk fuzz_text; mk fuzz_checkpoint; mk fuzz_npy
# IDX: the first 8 Fashion-MNIST test images (header patched to 8), plain and gzipped; labels.
zcat "$FMNIST/t10k-images-idx3-ubyte.gz" | head -c $((16 + 8 * 784)) > "$T/img"
printf '\x00\x00\x00\x08' | dd of="$T/img" bs=1 seek=4 conv=notrunc status=none
gzip -c "$T/img" > "$T/img.gz"
with_mode 0 "$T/img" "$DIR/fuzz_idx/seed-plain"
with_mode 0 "$T/img.gz" "$DIR/fuzz_idx/seed-gz"
zcat "$FMNIST/t10k-labels-idx1-ubyte.gz" | head -c 12 > "$T/lab"
printf '\x00\x00\x00\x04' | dd of="$T/lab" bs=1 seek=4 conv=notrunc status=none
with_mode 1 "$T/lab" "$DIR/fuzz_idx/seed-labels"
# CIFAR-10: two records (a label byte, then 3072 pixel bytes) from Fashion-MNIST's pixels.
{ printf '\x03'; head -c 3072 "$T/img.gz"; printf '\x07'; tail -c +17 "$T/img" | head -c 3072; } \
    > "$DIR/fuzz_cifar/seed-two"
# Images: a PNG grid of samples written by glow, and JPEGs (baseline, progressive, gray).
./glow train --depth 1 --width 4 --batch 16 --init-batch 16 --steps 2 --eval-n 16 \
    --sample-every 0 --threads 1 --out "$T/run" > /dev/null 2>&1
./glow sample --checkpoint "$T/run/checkpoint.glow" --n 2 --out "$T/s.png" > /dev/null 2>&1
with_mode 0 "$T/s.png" "$DIR/fuzz_image/seed-png"
cc tests/fuzz/make_jpeg.c -ljpeg -o "$T/make_jpeg" && "$T/make_jpeg" "$T/j"
for j in "$T"/j-*.jpg; do with_mode 0 "$j" "$DIR/fuzz_image/seed-$(basename "$j" .jpg)"; done
# Text: a CelebA-style attribute file and a labels.csv for a.png, b.png, c.png.
printf '3\nSmiling Young\na.png 1 -1\nb.png -1 1\nc.png 1 1\n' > "$T/attr"
printf 'file,label\na.png,0\nb.png,1\nc.png,2\n' > "$T/csv"
with_mode 0 "$T/attr" "$DIR/fuzz_text/seed-attr"
with_mode 1 "$T/csv" "$DIR/fuzz_text/seed-csv"
# A small checkpoint, and latents and directions from it.
cp "$T/run/checkpoint.glow" "$DIR/fuzz_checkpoint/seed-tiny"
./glow encode --checkpoint "$T/run/checkpoint.glow" --n 2 --out "$T/z.npy" > /dev/null 2>&1
with_mode 0 "$T/z.npy" "$DIR/fuzz_npy/seed-npy"
./glow attributes --checkpoint "$T/run/checkpoint.glow" --n 200 --out "$T/d.npz" > /dev/null 2>&1 &&
    with_mode 1 "$T/d.npz" "$DIR/fuzz_npy/seed-npz"
# glow serve's requests (fuzz_api.c: the first byte is the route; @A and @B become ids),
# against that checkpoint and its directions, kept in DIR/model.
mk model; mk fuzz_api
cp "$T/run/checkpoint.glow" "$DIR/model/checkpoint.glow"
cp "$T/d.npz" "$DIR/model/dirs.npz"
api() { printf "\\x$(printf %02x "$1")%s" "$2" > "$DIR/fuzz_api/seed-$3"; }
api 0 "/api/info" info
api 0 "/api/gallery/3.png" gallery
api 0 "/api/image/@A.png" image
api 1 '{"gallery": 2}' encode
api 3 '{"id": "@A", "alphas": {"T-shirt/top": 0.5, "Bag": -1.25e0}}' manipulate
api 4 '{"a": "@A", "b": "@B", "t": 0.25}' mix
api 5 'temperature=0.5&n=2&seed=3' sample
api 6 '/api/encode' method
api 7 '{"a": [1, -2.5e-3, "x\u00e9\ud83d\ude00\n", true, false, null, {"b": {}}]}' json
with_mode 2 "$T/s.png" "$DIR/fuzz_api/seed-upload"
exit 0
