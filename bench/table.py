#!/usr/bin/python3
"""Markdown table of glow bench results against the PyTorch reference's (JSON lines).
A file may hold several rounds of the same (config, phase): the table gives the medians."""
import json
import statistics
import sys


def rows(path, key):
    runs = {}
    for line in open(path):
        r = json.loads(line)
        if "phase" in r and "config" in r:
            runs.setdefault((r["config"], r["phase"]), []).append(
                (r[key], r.get("peak_rss_mib"), r.get("gflops", r.get("achieved_conv_gflops"))))
    return {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in runs.items()}


torch = rows(sys.argv[1], "value")
# The GEMM peak: the best measurement of any run (a busy moment only ever lowers it).
peak = max(json.loads(line).get("blas_peak_gflops", 0) for f in sys.argv[2:] for line in open(f))
ours = rows(sys.argv[2], "img_per_s")
stored = rows(sys.argv[3], "img_per_s") if len(sys.argv) > 3 else {}
# The fourth file: training with a budget of kept activations (--activation-memory).
budget = rows(sys.argv[4], "img_per_s") if len(sys.argv) > 4 else {}
mib = max((json.loads(line).get("activation_memory_mib", 0) for line in open(sys.argv[4])),
          default=0) if budget else 0
print("| config | phase | PyTorch img/s | glow img/s (ratio) | glow, stored activations (ratio) "
      f"| glow, {mib:.0f} MiB of kept activations (ratio) "
      "| GFLOP/s glow / PyTorch | glow, share of GEMM peak | peak MiB glow / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|")
for key in torch:
    if key not in ours:
        continue
    t, o = torch[key], ours[key]
    s = stored.get(key)
    b = budget.get(key)
    st = f"{s[0]:.1f} ({s[0] / t[0]:.2f}x)" if s else "-"
    bt = f"{b[0]:.1f} ({b[0] / t[0]:.2f}x)" if b else "-"
    share = f"{100 * o[2] / peak:.0f}%" + (f" / {100 * s[2] / peak:.0f}%" if s else "")
    mem = f"{o[1]:.0f}" + (f" ({s[1]:.0f} stored, {b[1]:.0f} budget)" if s and b else "")
    print(f"| {key[0]} | {key[1]} | {t[0]:.1f} | {o[0]:.1f} ({o[0] / t[0]:.2f}x) | {st} | {bt} | "
          f"{o[2]:.0f} / {t[2]:.0f} | {share} | {mem} / {t[1]:.0f} |")
print(f"\nGEMM peak: OpenBLAS sgemm 2048^3, the best of all runs: {peak:.0f} GFLOP/s")
