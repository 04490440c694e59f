#!/usr/bin/env python3
"""The tables and plots of docs/RESULTS.md from the outputs of scripts/reproduce.sh.

    results.py ablation RUNS_DIR          markdown tables of the runs' eval.json (per seed, and over seeds)
    results.py paired RUNS_DIR            differences of two permutations within a seed, per test image
    results.py best RUNS_DIR              the best seed-1 run's folder (lowest test bits/dim)
    results.py temperature CKPT OUT.md    bits/dim of the model's own samples at each temperature
    results.py memory GLOW.jsonl TORCH.jsonl OUT.png   peak training memory against depth
    results.py speed BENCH.jsonl          sampling latency per image against image size
    results.py manipulation CKPT DIRECTIONS.npz OUT.md   class a moved toward class b, alpha 0..1.5

Uses the Python module (python/glow) over build/libglow.so, and NumPy.
"""
import json
import math
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
import glow  # noqa: E402

PERMUTATIONS = ["reverse", "shuffle", "invconv", "invconv-lu"]
TEMPERATURES = [0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
FASHION = "/usr/share/datasets/fashion-mnist"
# The pairs of tests/test_latent.c: T-shirt/top -> Trouser, Sandal -> Sneaker, Pullover -> Bag.
CLASS_PAIRS = [(0, 1), (5, 7), (2, 8)]
ALPHAS = [0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


def runs(folder):
    """{(coupling, permutation, seed): eval dict} of the finished runs."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "eval.json")
        if not os.path.exists(path):
            continue
        coupling, rest = name.split("-", 1)
        perm, seed = rest.rsplit("-seed", 1)
        with open(path) as f:
            out[(coupling, perm, int(seed))] = dict(json.load(f), dir=os.path.join(folder, name))
    return out


def ablation(folder):
    """Seed 1 as a coupling x permutation table; with more seeds, a row per variant too:
    each seed's figure, the mean over seeds and their spread (sd)."""
    r = runs(folder)
    seeds = sorted({s for _, _, s in r})
    print("| coupling | " + " | ".join(PERMUTATIONS) + " |")
    print("|---|" + "---|" * len(PERMUTATIONS))
    for coupling in ("additive", "affine"):
        cells = [f"{r[k]['bpd']:.4f} +- {r[k]['bpd_se']:.4f}" if k in r else "-"
                 for k in ((coupling, perm, 1) for perm in PERMUTATIONS)]
        print(f"| {coupling} | " + " | ".join(cells) + " |")
    if len(seeds) < 2:
        return
    print()
    print("| coupling | permutation | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean over seeds | sd over seeds |")
    print("|---|---|" + "---|" * (len(seeds) + 2))
    for coupling in ("additive", "affine"):
        for perm in PERMUTATIONS:
            got = [r[(coupling, perm, s)]["bpd"] if (coupling, perm, s) in r else None
                   for s in seeds]
            have = [g for g in got if g is not None]
            if not have:
                continue
            m = sum(have) / len(have)
            sd = (math.sqrt(sum((g - m) ** 2 for g in have) / (len(have) - 1))
                  if len(have) > 1 else float("nan"))
            cells = [f"{g:.4f}" if g is not None else "-" for g in got]
            print(f"| {coupling} | {perm} | " + " | ".join(cells)
                  + (f" | {m:.4f} ({len(have)} seeds) | {sd:.4f} |" if len(have) > 1 else " | - | - |"))


# The pairs the text of docs/RESULTS.md weighs: the paper's order, and the two near-ties.
PAIRS_COMPARED = [("shuffle", "reverse"), ("invconv", "shuffle"), ("invconv-lu", "invconv"),
                  ("invconv-lu", "reverse")]


def paired(folder):
    """Per seed and coupling, the difference in test bits/dim of two permutations over all
    10,000 test images with the same dequantisation noise (that of glow eval), and the
    standard error of that paired difference, which is far below either run's own: the
    noise of the test set alone, without that of training (the spread over seeds)."""
    x, _ = glow.load_dataset(FASHION, "test")
    r = runs(folder)
    per_image = {k: glow.Model.load(os.path.join(e["dir"], "checkpoint.glow")).bits_per_dim(x)
                 for k, e in r.items()}
    print("| seed | coupling | " + " | ".join(f"{a} - {b}" for a, b in PAIRS_COMPARED) + " |")
    print("|---|---|" + "---|" * len(PAIRS_COMPARED))
    for seed in sorted({s for _, _, s in r}):
        for coupling in ("additive", "affine"):
            cells = []
            for a, b in PAIRS_COMPARED:
                pa, pb = per_image.get((coupling, a, seed)), per_image.get((coupling, b, seed))
                if pa is None or pb is None:
                    cells.append("-")
                    continue
                d = pa - pb
                cells.append(f"{d.mean():+.4f} +- {d.std(ddof=1) / math.sqrt(len(d)):.4f}")
            if any(c != "-" for c in cells):
                print(f"| {seed} | {coupling} | " + " | ".join(cells) + " |")


def best(folder):
    """Of seed 1, the seed every variant has, so that more seeds do not change the pick."""
    r = [e for (_, _, seed), e in runs(folder).items() if seed == 1]
    print(min(r, key=lambda e: e["bpd"])["dir"])


def temperature(ckpt, out):
    """n samples at each T, quantised to pixels as glow sample writes them, then scored
    exactly by the same model (its Polyak average), with the standard error over images."""
    model = glow.Model.load(ckpt)
    n = 1000
    lines = ["| T | bits/dim of 1,000 samples | standard error |", "|---|---|---|"]
    for t in TEMPERATURES:
        x = model.sample(n, temperature=t, seed=1)
        bpd = model.bits_per_dim(x)
        se = bpd.std(ddof=1) / math.sqrt(n)
        lines.append(f"| {t:g} | {bpd.mean():.4f} | {se:.4f} |")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def memory(glow_rows, torch_rows, out_png):
    ours = {"rebuilt": {}, "stored": {}}
    for line in open(glow_rows):
        row = json.loads(line)
        if row.get("config") == "mem-sweep":
            ours[row["mode"]][row["depth"]] = row["peak_rss_mib"]
    torch = {}
    for line in open(torch_rows):
        row = json.loads(line)
        if row.get("metric") == "train_step_peak_rss_vs_K":
            torch[row["model"]["K"]] = row["peak_rss_mib"]
    ks = sorted(set(ours["rebuilt"]) | set(torch))
    nan = float("nan")
    series = {"glow-c (default: rebuilt)": [ours["rebuilt"].get(k, nan) for k in ks],
              "glow-c (stored activations)": [ours["stored"].get(k, nan) for k in ks],
              "PyTorch reference": [torch.get(k, nan) for k in ks]}
    glow.plot(out_png, series, x=ks, title="peak training memory (MiB) against depth K")
    print("| K | " + " | ".join(f"{name}, peak MiB" for name in series) + " |")
    print("|---|" + "---|" * len(series))
    for i, k in enumerate(ks):
        print(f"| {k} | " + " | ".join(f"{v[i]:.0f}" for v in series.values()) + " |")


def speed(rows):
    """Latency per sample; its convolution work (GFLOP/s x seconds) and the share of the
    GEMM peak that the same bench run measured."""
    print("| image | model | ms per sample | GFLOP per sample | share of the GEMM peak | peak MiB |")
    print("|---|---|---|---|---|---|")
    shapes = {"face32": "L=3", "face64": "L=4", "face128": "L=5", "face256": "L=6"}
    for line in open(rows):
        row = json.loads(line)
        if row.get("phase") == "sample" and row["config"] in shapes:
            size = row["config"][4:]
            work = row["gflops"] * row["ms_per_image"] / 1000
            share = row["gflops"] / row["blas_peak_gflops"]
            print(f"| {size}x{size}x3 | {shapes[row['config']]} K=32 width 512 | "
                  f"{row['ms_per_image']:.0f} | {work:.1f} | {share:.0%} of "
                  f"{row['blas_peak_gflops']:.0f} GFLOP/s | {row['peak_rss_mib']:.0f} |")


def manipulation(ckpt, directions, out):
    """The first 200 test images of class a, moved along direction(b) - direction(a) (the
    one-vs-rest mean-latent differences of `glow attributes`) by alpha and decoded; each is
    classified by the nearest class mean of the training pixels, as tests/test_latent.c
    does: the share predicted b, and the mean P(b) of that test's softmax over distances."""
    import numpy as np
    model = glow.Model.load(ckpt)
    train_x, train_y = glow.load_dataset(FASHION, "train")
    test_x, test_y = glow.load_dataset(FASHION, "test")
    flat = train_x.reshape(len(train_x), -1).astype(np.float64)
    means = np.stack([flat[train_y == k].mean(0) for k in range(10)])
    d = np.load(directions)
    names, dirs = [str(n) for n in d["names"]], d["directions"]

    def classify(px):
        dist = ((px.reshape(len(px), 1, -1).astype(np.float64) - means) ** 2).sum(2) / 2e5
        p = np.exp(dist.min(1, keepdims=True) - dist)
        return dist.argmin(1), p / p.sum(1, keepdims=True)

    head = " | ".join(f"alpha {a:g}" for a in ALPHAS)
    lines = [f"| a -> b | {head} |", "|---|" + "---|" * len(ALPHAS)]
    for a, b in CLASS_PAIRS:
        x = test_x[test_y == a][:200]
        z = model.encode(x)
        cells = []
        for alpha in ALPHAS:
            moved = model.decode(z + np.float32(alpha) * (dirs[b] - dirs[a]))
            pred, p = classify(moved)
            cells.append(f"{(pred == b).mean():.2f} ({p[:, b].mean():.2f})")
        lines.append(f"| {names[a]} -> {names[b]} | " + " | ".join(cells) + " |")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    commands = {"ablation": ablation, "paired": paired, "best": best, "temperature": temperature,
                "memory": memory, "speed": speed, "manipulation": manipulation}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
