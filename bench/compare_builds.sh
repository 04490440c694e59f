#!/usr/bin/env bash
# Two builds of glow side by side: the current tree's against REV's (default HEAD~1), in
# the same session, alternating within each round (the machine's speed drifts up to 2x
# within minutes), and a table of the median ratios new / old per configuration and phase.
#   bench/compare_builds.sh REV [CONFIGS] [PHASES]
#   e.g. ROUNDS=5 bench/compare_builds.sh b0163ae fmnist,cifar-paper train,encode
# ROUNDS (default 5) rounds, REPEATS (default 5) timed repeats per bench; OLD_BIN: a glow
# already built from REV.
# REV is built in a temporary worktree with its own Makefile's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:-HEAD~1}
CONFIGS=${2:-fmnist,cifar-paper}
PHASES=${3:-train,encode}
ROUNDS=${ROUNDS:-5}
OUT=bench/results
mkdir -p "$OUT"
make -s glow
REPEATS=${REPEATS:-5}
if [ -n "${OLD_BIN:-}" ]; then # a glow already built from REV
    OLD_GLOW=$OLD_BIN
else
    OLD=$(mktemp -d)
    trap 'git worktree remove --force "$OLD" >/dev/null 2>&1 || rm -rf "$OLD"' EXIT
    git worktree add --detach "$OLD" "$REV" >/dev/null 2>&1
    make -s -C "$OLD" glow >/dev/null
    OLD_GLOW=$OLD/glow
fi
rm -f "$OUT/old.jsonl" "$OUT/new.jsonl"
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    # Alternate which goes first, so that neither always gets the warmer minute.
    if [ $((round % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for which in $order; do
        bin=./glow; [ "$which" = old ] && bin="$OLD_GLOW"
        "$bin" bench --config "$CONFIGS" --phases "$PHASES" --repeats "$REPEATS" --json \
            >> "$OUT/$which.jsonl"
    done
done
/usr/bin/python3 - "$OUT/old.jsonl" "$OUT/new.jsonl" "$REV" <<'PY' | tee "$OUT/builds.md"
import json, statistics, sys
def load(path):
    runs = {}
    for line in open(path):
        r = json.loads(line)
        runs.setdefault((r["config"], r["phase"]), []).append(r["img_per_s"])
    return runs
old, new = load(sys.argv[1]), load(sys.argv[2])
print(f"| config | phase | old img/s ({sys.argv[3]}) | new img/s | median ratio new/old | rounds |")
print("|---|---|---|---|---|---|")
for key in sorted(old):
    o, n = old[key], new.get(key, [])
    ratios = [b / a for a, b in zip(o, n)]
    print(f"| {key[0]} | {key[1]} | {statistics.median(o):.1f} | {statistics.median(n):.1f} | "
          f"{statistics.median(ratios):.3f} | {len(ratios)} |")
PY
