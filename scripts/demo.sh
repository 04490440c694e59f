#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is needed, build, train the
# default model on Fashion-MNIST for a few minutes (MINUTES, default 5), evaluate it on all
# 10,000 test images, and write samples at temperature 0.7 and the training curve.
# Everything lands in runs/demo/. Run it again to continue the same run for longer.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-5}
OUT=${OUT:-runs/demo}
./scripts/setup.sh
make -j"$(nproc)" glow
resume=()
[ -f "$OUT/checkpoint.glow" ] && resume=(--resume)
./glow train --out "$OUT" --minutes "$MINUTES" --steps 1000000 --eval-every 500 \
    --sample-every 500 "${resume[@]}"
./glow eval --checkpoint "$OUT/checkpoint.glow" | tee "$OUT/eval.txt"
./glow sample --checkpoint "$OUT/checkpoint.glow" --temperature 0.7 --n 64 --out "$OUT/samples_t0.7.png"
./glow sample --checkpoint "$OUT/checkpoint.glow" --temperature 0,0.5,0.7,0.9,1 --n 10 \
    --out "$OUT/samples_by_temperature.png"
echo "demo: see $OUT/curve.png, $OUT/samples_t0.7.png, $OUT/samples_by_temperature.png, $OUT/eval.txt"
