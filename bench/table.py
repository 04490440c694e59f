#!/usr/bin/python3
"""Markdown table of glow bench results against the PyTorch reference's (JSON lines).
  table.py torch.jsonl glow.jsonl [stored.jsonl [budget.jsonl [bf16x3.jsonl [bf16x3_stored.jsonl]]]]
Each file holds the same rounds in the same order (bench/compare.sh alternates them). The
speeds are medians over the rounds; each ratio is the median of the per-round ratios, which
drifts less than a ratio of medians when the machine's speed changes between rounds."""
import json
import statistics
import sys


def runs(path, key):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "phase" in r and "config" in r:
            out.setdefault((r["config"], r["phase"]), []).append(
                (r[key], r.get("peak_rss_mib"), r.get("gflops", r.get("achieved_conv_gflops"))))
    return out


def median(v, i):
    return statistics.median(x[i] for x in v)


def cell(ours, torch):
    """'speed (ratio)' for one of our modes, or '-' where it was not run."""
    if not ours:
        return "-"
    ratio = statistics.median(o[0] / t[0] for o, t in zip(ours, torch))
    return f"{median(ours, 0):.1f} ({ratio:.2f}x)"


torch = runs(sys.argv[1], "value")
# The GEMM peak: the best measurement of any run (a busy moment only ever lowers it, so the
# shares below are if anything understated).
peaks = [json.loads(line).get("blas_peak_gflops", 0) for f in sys.argv[2:] for line in open(f)]
peak = max(peaks)
ours = runs(sys.argv[2], "img_per_s")
stored = runs(sys.argv[3], "img_per_s") if len(sys.argv) > 3 else {}
# The fourth file: training with a budget of kept activations (--activation-memory).
budget = runs(sys.argv[4], "img_per_s") if len(sys.argv) > 4 else {}
mib = max((json.loads(line).get("activation_memory_mib", 0) for line in open(sys.argv[4])),
          default=0) if budget else 0
# The fifth and sixth: the default and the stored mode with --matmul bf16x3 (AMX).
amx = runs(sys.argv[5], "img_per_s") if len(sys.argv) > 5 else {}
amx_stored = runs(sys.argv[6], "img_per_s") if len(sys.argv) > 6 else {}
print("| config | phase | PyTorch img/s | glow img/s (ratio) | glow, stored activations (ratio) "
      f"| glow, {mib:.0f} MiB of kept activations (ratio) "
      "| glow bf16x3 (ratio) | glow bf16x3, stored activations (ratio) "
      "| GFLOP/s glow / PyTorch | glow, share of GEMM peak | peak MiB glow / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for key, t in torch.items():
    o, s, b = ours.get(key), stored.get(key), budget.get(key)
    if not o:
        continue
    share = f"{100 * median(o, 2) / peak:.0f}%" + (f" / {100 * median(s, 2) / peak:.0f}%" if s else "")
    mem = f"{median(o, 1):.0f}" + (f" ({median(s, 1):.0f} stored, {median(b, 1):.0f} budget)" if s and b else "")
    print(f"| {key[0]} | {key[1]} | {median(t, 0):.1f} | {cell(o, t)} | {cell(s, t)} | {cell(b, t)} | "
          f"{cell(amx.get(key), t)} | {cell(amx_stored.get(key), t)} | "
          f"{median(o, 2):.0f} / {median(t, 2):.0f} | {share} | {mem} / {median(t, 1):.0f} |")
print(f"\nGEMM peak: OpenBLAS sgemm 2048^3, the best of all runs: {peak:.0f} GFLOP/s "
      f"(the runs measured {min(peaks):.0f} to {peak:.0f})")
