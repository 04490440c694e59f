#!/usr/bin/python3
"""The on-paper scaling of data-parallel Glow training (docs/DISTRIBUTED.md): parameters
and gradient bytes per step, the ring-allreduce time 2(N-1)/N x bytes / bandwidth, the
compute time of a step on a GPU from its peak, and the scaling efficiency they give.
Needs libglow.so (make) and Debian's NumPy."""
import os
import sys


def model(h, w, c, levels, depth, width):
    """(parameters, forward FLOPs per image) of the default Glow (affine, LU 1x1
    convolutions, learned top prior) on h x w x c images: the parameters as the library
    counts them (the flat buffer, which the gradients share), the FLOPs as glow bench does."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import glow
    params = glow.Model.create((h, w, c), levels=levels, depth=depth, width=width).n_parameters
    flops = 0
    for i in range(levels):
        h, w, c = h // 2, w // 2, c * 4
        hw, n = h * w, width
        flops += depth * 2 * hw * (9 * (c // 2) * n + n * n + 9 * n * c + c * c)
        if i < levels - 1:  # the split prior's 3x3 convolution
            flops += 2 * hw * 9 * (c // 2) * c
            c //= 2
    return params, flops


MODELS = {
    # name: (h, w, c, L, K, width, images per GPU)
    "cifar-paper (32x32x3, L=3, K=32, width 512)": (32, 32, 3, 3, 32, 512, 64),
    "face 256x256x3 (L=6, K=32, width 512)": (256, 256, 3, 6, 32, 512, 4),
}
GPUS = {"V100 (15.7 TFLOP/s fp32)": 15.7e12, "H100 SXM (67 TFLOP/s fp32, 495 TF32 tensor)": 495e12}
UTILISATION = 0.4  # of the peak, sustained over a step
TRAIN_FLOPS = 3    # forward + backward = 3x the forward (ours: 4x, it rebuilds the input)
WORKERS = (8, 40, 256)
LINKS = {"25 Gbit/s": 25e9 / 8, "100 Gbit/s": 100e9 / 8}


def main():
    for name, (h, w, c, L, K, width, per_gpu) in MODELS.items():
        p, f = model(h, w, c, L, K, width)
        grad_bytes = 4 * p
        print("## %s\n" % name)
        print("%.1fM parameters; %.1f MB of float32 gradients per step; %.1f GFLOP forward per "
              "image; %d images per GPU per step\n" % (p / 1e6, grad_bytes / 1e6, f / 1e9, per_gpu))
        print("| workers | link | allreduce | " + " | ".join("step on %s / efficiency" % g.split(" (")[0] for g in GPUS) + " |")
        print("|---|---|---|" + "---|" * len(GPUS))
        for n in WORKERS:
            for link, bw in LINKS.items():
                t_comm = 2 * (n - 1) / n * grad_bytes / bw
                cells = []
                for gpu, peak in GPUS.items():
                    t_comp = TRAIN_FLOPS * f * per_gpu / (peak * UTILISATION)
                    serial = t_comp / (t_comp + t_comm)
                    overlap = t_comp / max(t_comp, t_comm)
                    cells.append("%.0f ms / %.0f%% (overlapped: %.0f%%)" % (t_comp * 1e3, 100 * serial, 100 * overlap))
                print("| %d | %s | %.0f ms | %s |" % (n, link, t_comm * 1e3, " | ".join(cells)))
        print()


if __name__ == "__main__":
    main()
