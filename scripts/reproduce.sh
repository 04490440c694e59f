#!/usr/bin/env bash
# Reruns what docs/RESULTS.md shows: the paper's findings checked on Fashion-MNIST.
#
#   scripts/reproduce.sh [PART...]      parts: ablation (default: all parts)
#
# Every run is resumable: a part that is done is skipped, and a run that was stopped
# (Ctrl-C, the end of a session) continues exactly from its last checkpoint when the script
# is run again. Outputs go to $OUT (default runs/reproduce); GLOW names the binary (default
# ./glow; point it at a copy so that a rebuild during a long run does not change it).
# Time on this machine's 2 cores: the ablation, 8 runs of 3,000 steps, about 11 minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/reproduce}
GLOW=${GLOW:-./glow}
STEPS=${STEPS:-3000}
[ -x "$GLOW" ] || make -j2 glow

# One training run to $STEPS steps in DIR with OPTIONS, resumed if it was started, then its
# exact test bits/dim on all 10,000 test images (DIR/eval.json).
train_and_eval() { # DIR OPTIONS...
    local dir=$1; shift
    [ -f "$dir/eval.json" ] && { echo "done: $dir"; return; }
    local common=(--steps "$STEPS" --eval-every 250 --eval-n 2000 --sample-every 1000 --log-every 50)
    if [ -f "$dir/checkpoint.glow" ]; then
        "$GLOW" train --resume --out "$dir" "${common[@]}" "$@"
    else
        "$GLOW" train --out "$dir" "${common[@]}" "$@"
    fi
    "$GLOW" eval --checkpoint "$dir/checkpoint.glow" --json >"$dir/eval.json.tmp"
    mv "$dir/eval.json.tmp" "$dir/eval.json"
}

# 1. The ablation: reverse, shuffle and the 1x1 convolution (plain and LU), each with
# additive and affine coupling; 28x28, L=2, K=8, width 128, seed 1 (SEEDS="1 2 3" for more).
ablation() {
    for seed in ${SEEDS:-1}; do
        for coupling in additive affine; do
            for perm in reverse shuffle invconv invconv-lu; do
                train_and_eval "$OUT/ablation/$coupling-$perm-seed$seed" --levels 2 --depth 8 \
                    --width 128 --coupling "$coupling" --permutation "$perm" --seed "$seed"
            done
        done
    done
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(ablation)
for p in "${parts[@]}"; do
    case $p in
    ablation) ablation ;;
    *) echo "reproduce.sh: unknown part '$p' (ablation)" >&2; exit 2 ;;
    esac
done
