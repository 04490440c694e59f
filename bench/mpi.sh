#!/usr/bin/env bash
# Training speed on many processes against one: glow train on 2 processes x 1 thread
# (mpirun) and on 1 process x 2 threads, alternated within the run (this machine's speed
# drifts from minute to minute), on the default Fashion-MNIST model and on cifar-paper
# (3x32x32 L=3 K=32 width 512, on random images: speed does not depend on them). Prints
# the median images/s of each, their ratio and the allreduce's share of a step.
#
#   bench/mpi.sh [ROUNDS]     (default 2; about 3 minutes a round here)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp glow "$work/glow" # a rebuild during the run must not change what is measured

# A CIFAR-10 binary folder of random images: records of 1 label byte and 3072 pixels.
/usr/bin/python3 - "$work/cifar" <<'EOF'
import os, sys
import numpy as np
d = sys.argv[1]
os.makedirs(d)
rng = np.random.default_rng(1)
for name, n in (("data_batch_1.bin", 1024), ("test_batch.bin", 64)):
    rec = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
    rec[:, 0] %= 10
    rec.tofile(os.path.join(d, name))
EOF

fmnist=(--steps 70 --log-every 10 --eval-every 0 --eval-n 64 --sample-every 0)
cifar=(--data "$work/cifar" --levels 3 --depth 32 --width 512 --steps 8 --log-every 2
       --init-batch 64 --eval-every 0 --eval-n 8 --sample-every 0)
mpirun=(mpirun --allow-run-as-root --bind-to core -np 2)

run() { # NAME LAUNCH... -- TRAIN OPTIONS...
    local name=$1 out="$work/run"; shift
    rm -rf "$out"
    "$@" --out "$out" >/dev/null 2>"$work/log" || { cat "$work/log"; exit 1; }
    # The intervals after the first (which holds the start), as "name img/s share" lines.
    /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[2]) if "img_per_s" in l][1:]
for r in rows: print(sys.argv[1], r["img_per_s"], r.get("allreduce_share", 0))' \
        "$name" "$out/metrics.jsonl" >>"$work/results"
}

for r in $(seq "$rounds"); do
    run "fmnist 1x2" "$work/glow" train "${fmnist[@]}" --threads 2
    run "fmnist 2x1" "${mpirun[@]}" "$work/glow" train "${fmnist[@]}" --threads 1
    run "cifar-paper 1x2" "$work/glow" train "${cifar[@]}" --threads 2
    run "cifar-paper 2x1" "${mpirun[@]}" "$work/glow" train "${cifar[@]}" --threads 1
done

/usr/bin/python3 - "$work/results" <<'EOF'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    model, layout, ips, share = line.split()
    by.setdefault((model, layout), []).append((float(ips), float(share)))
print("| model | 1 process x 2 threads | 2 processes x 1 thread | ratio | allreduce share of a step |")
print("|---|---|---|---|---|")
for model in ("fmnist", "cifar-paper"):
    one = statistics.median(i for i, _ in by[(model, "1x2")])
    two = statistics.median(i for i, _ in by[(model, "2x1")])
    share = statistics.median(s for _, s in by[(model, "2x1")])
    print(f"| {model} | {one:.1f} img/s | {two:.1f} img/s | {two / one:.2f} | {100 * share:.1f}% |")
EOF
