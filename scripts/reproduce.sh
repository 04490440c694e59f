#!/usr/bin/env bash
# Reruns what docs/RESULTS.md shows: the paper's findings checked on Fashion-MNIST.
#
#   scripts/reproduce.sh [PART...]      parts: ablation, temperature, memory, latent, speed
#                                       (default: all, in that order)
#
# Every run is resumable: a finished training run (and the memory sweep) is skipped, a
# stopped one (Ctrl-C, the end of a session) continues exactly from its last checkpoint when
# the script is run again; the other parts take minutes and are redone. Two seeds side by
# side: SEEDS=2 THREADS=1 scripts/reproduce.sh ablation & SEEDS=3 THREADS=1 ... ablation.
# Outputs go to $OUT (default runs/reproduce); GLOW names the binary (default ./glow; point
# it at a copy so that a rebuild during a long run does not change it).
# The pictures go to docs/figures/results/, the tables to $OUT/*.md (docs/RESULTS.md shows
# both). Time on this machine's 2 cores, measured: the ablation, 8 runs of 3,000 steps a
# seed, 10 minutes a run one at a time, or 17 minutes a run two side by side with THREADS=1
# (8.5 a run: 80 and 68 minutes a seed); temperature 2 minutes; memory (with the PyTorch
# reference) 10 minutes; latent 1 minute; speed 1.5 minutes. All of it with the default
# single seed: about 1 hour 35 minutes; with SEEDS="1 2 3", about 4 hours.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/reproduce}
GLOW=${GLOW:-./glow}
STEPS=${STEPS:-3000}
[ -x "$GLOW" ] || make -j2 glow
make -s -j2 build/libglow.so # the Python module's library
FIG=docs/figures/results
mkdir -p "$OUT" "$FIG"
PY=/usr/bin/python3

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
# additive and affine coupling; 28x28, L=2, K=8, width 128, seed 1. SEEDS="2 3" runs more
# seeds, VARIANTS="affine-invconv additive-reverse ..." only those variants, THREADS=1 one
# thread a run (two runs side by side use 2 cores better than one run on both).
ablation() {
    local threads=()
    [ -z "${THREADS:-}" ] || threads=(--threads "$THREADS")
    for seed in ${SEEDS:-1}; do
        for coupling in additive affine; do
            for perm in reverse shuffle invconv invconv-lu; do
                [ -z "${VARIANTS:-}" ] || [[ " $VARIANTS " == *" $coupling-$perm "* ]] || continue
                train_and_eval "$OUT/ablation/$coupling-$perm-seed$seed" --levels 2 --depth 8 \
                    --width 128 --coupling "$coupling" --permutation "$perm" --seed "$seed" \
                    "${threads[@]}"
            done
        done
    done
}

# The ablation's pictures (test bits/dim curves, one per coupling) and table.
ablation_figures() {
    for coupling in additive affine; do
        local args=()
        for perm in reverse shuffle invconv invconv-lu; do
            [ -f "$OUT/ablation/$coupling-$perm-seed1/eval.json" ] &&
                args+=("$OUT/ablation/$coupling-$perm-seed1=$perm")
        done
        # The pictures are seed 1's: a run of other seeds alone leaves them as they are.
        [ ${#args[@]} -eq 4 ] || { echo "not drawn: $FIG/ablation_$coupling.png (seed 1 not done)"; continue; }
        "$GLOW" plot "${args[@]}" --title "$coupling coupling: test bits/dim (2,000 images)" \
            --out "$FIG/ablation_$coupling.png"
    done
    $PY tools/results.py ablation "$OUT/ablation" | tee "$OUT/ablation.md"
    $PY tools/results.py paired "$OUT/ablation" | tee "$OUT/paired.md"
}

# The ablation's best run of seed 1; without the runs, its average kept in docs/results/best.glow.
best_checkpoint() {
    if [ -d "$OUT/ablation" ]; then echo "$($PY tools/results.py best "$OUT/ablation")/checkpoint.glow"
    else echo docs/results/best.glow; fi
}

# 2. Samples of the best model at eight temperatures, and the bits/dim of its own samples.
temperature() {
    local ck
    ck=$(best_checkpoint)
    "$GLOW" sample --checkpoint "$ck" --temperature 0,0.25,0.5,0.6,0.7,0.8,0.9,1.0 --n 10 \
        --zoom 2 --out "$FIG/temperatures.png"
    $PY tools/results.py temperature "$ck" "$OUT/temperature.md"
}

# 3. Peak training memory against depth: ours in both modes, the PyTorch reference's.
memory() {
    $PY -c "import torch" 2>/dev/null ||
        { echo "reproduce.sh memory: needs PyTorch (apt-get install python3-torch)" >&2; exit 1; }
    if [ ! -f "$OUT/memory_glow.jsonl" ]; then
        "$GLOW" bench --mem-sweep --config fmnist --json >"$OUT/memory_glow.jsonl.tmp"
        mv "$OUT/memory_glow.jsonl.tmp" "$OUT/memory_glow.jsonl"
    fi
    if [ ! -f "$OUT/memory_torch.jsonl" ]; then
        $PY ../shared/reference/torch_bench.py --mem-sweep --sweep-K 4,8,16,32,64 \
            >"$OUT/memory_torch.jsonl.tmp"
        mv "$OUT/memory_torch.jsonl.tmp" "$OUT/memory_torch.jsonl"
    fi
    $PY tools/results.py memory "$OUT/memory_glow.jsonl" "$OUT/memory_torch.jsonl" \
        "$FIG/memory.png" | tee "$OUT/memory.md"
}

# 4. Latent space of the best model: the invertibility audit, the manipulation table (test
# images of class a moved toward class b, alpha 0..1.5), its 3 strips, 3 interpolations.
latent() {
    local ck dir=$OUT/latent
    ck=$(best_checkpoint)
    mkdir -p "$dir"
    "$GLOW" check --checkpoint "$ck" >"$dir/check.txt" ||
        echo "reproduce.sh latent: glow check: not every test image inverts ($dir/check.txt)"
    cat "$dir/check.txt"
    "$GLOW" attributes --checkpoint "$ck" --split train --n 20000 --out "$dir/directions.npz"
    $PY tools/results.py manipulation "$ck" "$dir/directions.npz" "$OUT/manipulation.md"
    # The table's pairs, each on the first test image of class a (19, 8 and 1).
    local alphas=0,0.25,0.5,0.75,1,1.25,1.5
    "$GLOW" manipulate 19 --checkpoint "$ck" --directions "$dir/directions.npz" --attribute Trouser \
        --minus T-shirt/top --alpha $alphas --zoom 3 --out "$FIG/tshirt_to_trouser.png"
    "$GLOW" manipulate 8 --checkpoint "$ck" --directions "$dir/directions.npz" --attribute Sneaker \
        --minus Sandal --alpha $alphas --zoom 3 --out "$FIG/sandal_to_sneaker.png"
    "$GLOW" manipulate 1 --checkpoint "$ck" --directions "$dir/directions.npz" --attribute Bag \
        --minus Pullover --alpha $alphas --zoom 3 --out "$FIG/pullover_to_bag.png"
    # Test images 0-5: ankle boot, pullover, trouser, trouser, shirt, trouser.
    "$GLOW" interpolate 0 1 --checkpoint "$ck" --steps 8 --zoom 3 --out "$FIG/interpolate_boot_pullover.png"
    "$GLOW" interpolate 2 4 --checkpoint "$ck" --steps 8 --zoom 3 --out "$FIG/interpolate_trouser_shirt.png"
    "$GLOW" interpolate 1 4 --checkpoint "$ck" --steps 8 --zoom 3 --out "$FIG/interpolate_pullover_shirt.png"
}

# 5. Sampling latency per image against image size (random weights: speed only).
speed() {
    "$GLOW" bench --config face32,face64,face128,face256 --phases sample --repeats 3 --json \
        >"$OUT/speed.jsonl"
    $PY tools/results.py speed "$OUT/speed.jsonl" | tee "$OUT/speed.md"
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(ablation temperature memory latent speed)
for p in "${parts[@]}"; do
    case $p in
    ablation) ablation; ablation_figures ;;
    temperature | memory | latent | speed) "$p" ;;
    *) echo "reproduce.sh: unknown part '$p' (ablation, temperature, memory, latent, speed)" >&2
       exit 2 ;;
    esac
done
