#!/usr/bin/env bash
# glow bench beside the PyTorch reference (../shared/reference, its "tuned" setting), in the
# same session on the same machine, and a table of the ratios (ours / PyTorch). Absolute
# times drift here, within minutes; so ROUNDS rounds (default 3) alternate the two, and the
# table gives the median of each over the rounds.
#   bench/compare.sh [CONFIGS]        e.g. ROUNDS=1 bench/compare.sh fmnist,cifar-paper
# Needs python3-torch (apt-get install python3-torch libjemalloc2). Writes bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIGS=${1:-fmnist,cifar-paper,celeba64}
ROUNDS=${ROUNDS:-3}
REF=${REF:-../shared/reference}
OUT=bench/results
mkdir -p "$OUT"
make -s glow
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
BUDGET_MIB=${BUDGET_MIB:-1024} # kept activations for the third glow training mode
# bf16x3 matrix products (AMX) where the CPU has them: two more glow runs per round.
AMX=0
./glow bench --config fmnist --phases encode --repeats 1 --matmul bf16x3 >/dev/null 2>&1 && AMX=1
rm -f "$OUT/torch.jsonl" "$OUT/glow.jsonl" "$OUT/glow_stored.jsonl" "$OUT/glow_budget.jsonl" \
    "$OUT/glow_bf16x3.jsonl" "$OUT/glow_bf16x3_stored.jsonl"
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    LD_PRELOAD=$JEMALLOC MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        /usr/bin/python3 "$REF/torch_bench.py" --channels-last --configs "$CONFIGS" >> "$OUT/torch.jsonl"
    ./glow bench --config "$CONFIGS" --json >> "$OUT/glow.jsonl"
    ./glow bench --config "$CONFIGS" --json --store-activations --phases train >> "$OUT/glow_stored.jsonl"
    ./glow bench --config "$CONFIGS" --json --activation-memory "$BUDGET_MIB" --phases train \
        >> "$OUT/glow_budget.jsonl"
    if [ "$AMX" = 1 ]; then
        ./glow bench --config "$CONFIGS" --json --matmul bf16x3 >> "$OUT/glow_bf16x3.jsonl"
        ./glow bench --config "$CONFIGS" --json --matmul bf16x3 --store-activations --phases train \
            >> "$OUT/glow_bf16x3_stored.jsonl"
    fi
done
AMX_FILES=()
[ "$AMX" = 1 ] && AMX_FILES=("$OUT/glow_bf16x3.jsonl" "$OUT/glow_bf16x3_stored.jsonl")
/usr/bin/python3 bench/table.py "$OUT/torch.jsonl" "$OUT/glow.jsonl" "$OUT/glow_stored.jsonl" \
    "$OUT/glow_budget.jsonl" "${AMX_FILES[@]}" | tee "$OUT/table.md"
