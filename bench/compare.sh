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
rm -f "$OUT/torch.jsonl" "$OUT/glow.jsonl" "$OUT/glow_stored.jsonl" "$OUT/glow_budget.jsonl"
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    LD_PRELOAD=$JEMALLOC MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        /usr/bin/python3 "$REF/torch_bench.py" --channels-last --configs "$CONFIGS" >> "$OUT/torch.jsonl"
    ./glow bench --config "$CONFIGS" --json >> "$OUT/glow.jsonl"
    ./glow bench --config "$CONFIGS" --json --store-activations --phases train >> "$OUT/glow_stored.jsonl"
    ./glow bench --config "$CONFIGS" --json --activation-memory "$BUDGET_MIB" --phases train \
        >> "$OUT/glow_budget.jsonl"
done
/usr/bin/python3 bench/table.py "$OUT/torch.jsonl" "$OUT/glow.jsonl" "$OUT/glow_stored.jsonl" \
    "$OUT/glow_budget.jsonl" | tee "$OUT/table.md"
