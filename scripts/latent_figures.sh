#!/usr/bin/env bash
# Latent-space figures of a trained Fashion-MNIST model: the invertibility audit over the
# whole test split, attribute directions (one vs rest per class), a manipulation strip, an
# interpolation strip, and the manipulation check of tests/test_latent.c on this model.
#   scripts/latent_figures.sh runs/demo/checkpoint.glow [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=${1:?usage: scripts/latent_figures.sh CHECKPOINT [OUT_DIR]}
OUT=${2:-$(dirname "$CKPT")/latent}
mkdir -p "$OUT"
make -s glow build/test_f32
./glow check --checkpoint "$CKPT" | tee "$OUT/check.txt" || true
./glow attributes --checkpoint "$CKPT" --split train --n 20000 --out "$OUT/directions.npz"
# Test images 0 (ankle boot), 1 (pullover), 2 (trouser): toward sneaker, coat and dress.
./glow manipulate 0 --checkpoint "$CKPT" --directions "$OUT/directions.npz" --attribute Sneaker \
    --minus "Ankle boot" --alpha 0,0.25,0.5,0.75,1,1.25 --out "$OUT/boot_to_sneaker.png"
./glow manipulate 1 --checkpoint "$CKPT" --directions "$OUT/directions.npz" --attribute Coat \
    --minus Pullover --alpha 0,0.25,0.5,0.75,1,1.25 --out "$OUT/pullover_to_coat.png"
./glow manipulate 2 --checkpoint "$CKPT" --directions "$OUT/directions.npz" --attribute Dress \
    --minus Trouser --alpha 0,0.25,0.5,0.75,1,1.25 --out "$OUT/trouser_to_dress.png"
./glow interpolate 0 1 --checkpoint "$CKPT" --steps 8 --out "$OUT/interpolation.png"
GLOW_TEST_CHECKPOINT="$CKPT" ./build/test_f32 latent_manipulation | tee "$OUT/manipulation_check.txt"
