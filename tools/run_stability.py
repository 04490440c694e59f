#!/usr/bin/env python3
"""Stability of a training run, from its metrics.jsonl: spikes, skipped and redone steps.

    tools/run_stability.py runs/hour [--warmup 200] [--window 20] [--ratio 1.5]

A spike is a train line (the mean of its log interval) above RATIO times the median of the
WINDOW train lines before it, after the warm-up steps. Each spike is printed with the
level whose bits/dim share moved most from that median, and that level's extremes, so that
it names the layer. Exit status 1 if there is a spike.
"""
import argparse
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a run folder or its metrics.jsonl")
    ap.add_argument("--warmup", type=int, default=200, help="steps before the first checked line")
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--ratio", type=float, default=1.5)
    a = ap.parse_args()
    path = a.run if a.run.endswith(".jsonl") else a.run + "/metrics.jsonl"
    lines = [json.loads(l) for l in open(path) if l.strip()]
    train = [d for d in lines if "train_bpd" in d]
    if not train:
        sys.exit(f"{path}: no train lines")
    spikes = []
    for i, d in enumerate(train):
        if d["step"] <= a.warmup or i < a.window:
            continue
        before = train[i - a.window:i]
        med = statistics.median(b["train_bpd"] for b in before)
        if d["train_bpd"] > a.ratio * med:
            spikes.append((d, med, before))
    steps = train[-1]["step"]
    redone = sum(d.get("redone", 0) for d in train)
    skipped = train[-1].get("skipped", 0)
    worst = max(d.get("max_step_bpd", d["train_bpd"]) for d in train if d["step"] > a.warmup)
    print(f"{path}: {steps} steps, {len(train)} train lines; {len(spikes)} spikes (a line above "
          f"{a.ratio}x the median of the {a.window} before it, after step {a.warmup}); "
          f"{skipped} steps skipped; {redone} redone for drift ({100.0 * redone / steps:.3f}%); "
          f"worst single step after warm-up {worst:.4g} bits/dim")
    for d, med, before in spikes:
        msg = f"  spike at step {d['step']}: {d['train_bpd']:.4g} bits/dim against a median of {med:.4g}"
        levels = d.get("levels")
        if levels:
            shares = []
            for k, lv in enumerate(levels):
                past = [b["levels"][k] for b in before if "levels" in b]
                for key in ("prior_bpd", "logdet_bpd"):
                    if lv.get(key) is None or not past:
                        continue
                    base = statistics.median(p[key] for p in past if p.get(key) is not None)
                    shares.append((lv[key] - base, k, key))
            if shares:
                jump, k, key = max(shares)
                lv = levels[k]
                msg += (f"; level {k}'s {key} rose by {jump:.4g} (min coupling log-scale "
                        f"{lv.get('min_coupling_logs')}, min prior log-std {lv.get('min_prior_logs')}, "
                        f"max |z| {lv.get('max_abs_z')}, max z-score {lv.get('max_z_score')})")
        print(msg)
    sys.exit(1 if spikes else 0)


if __name__ == "__main__":
    main()
