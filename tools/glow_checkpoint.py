#!/usr/bin/env python3
"""Read a glow-c checkpoint (docs/FORMAT.md): verify it, print its header and tensor
directory, and optionally compute log p(x) for a batch of images with an independent NumPy
implementation of the model (docs/MODEL.md).

    python3 tools/glow_checkpoint.py FILE                 header and tensor directory
    python3 tools/glow_checkpoint.py FILE --logp X.npy [--labels Y.npy] [--average]
        X.npy: preprocessed images (B, H, W, C), as glow_preprocess makes them
        (x = floor(u8 / 2^(8 - n_bits)) / 2^n_bits - 0.5 + noise); prints one line per
        example: index, log p(x) in nats, bits/dim.

Needs only NumPy. Exit status 0 on success, 1 if the file is not a valid checkpoint.
"""
import argparse
import struct
import sys
import zlib

import numpy as np

MAGIC = b"GLOWCKPT"
VERSIONS = (1, 2)
HEADER_SIZES = {1: 272, 2: 296}
COUPLINGS = ["additive", "affine"]
SCALES = ["sigmoid", "tanh"]
PRIOR_LOGS = ["free", "tanh"]
PERMUTATIONS = ["reverse", "shuffle", "invconv", "invconv-lu"]
OPTIMIZERS = ["adam", "adamax"]
SECTIONS = ["params", "moment1", "moment2", "average"]


class FormatError(Exception):
    pass


def _name16(b):
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def read_checkpoint(path):
    """Parse and verify a checkpoint. Returns a dict with 'element_size', 'config', 'state'
    (or None), 'optimizer' (or None), 'tensors' (list of dicts) and 'sections' (name ->
    float64 array of n_params values)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        if MAGIC.startswith(data):
            raise FormatError(f"{path}: truncated: {len(data)} bytes")
        raise FormatError(f"{path}: not a glow checkpoint (bad magic)")
    if data[:8] != MAGIC:
        raise FormatError(f"{path}: not a glow checkpoint (bad magic)")
    if len(data) < 12:
        raise FormatError(f"{path}: truncated: {len(data)} bytes, no version")
    version = struct.unpack_from("<I", data, 8)[0]
    if version not in VERSIONS:
        raise FormatError(f"{path}: unsupported checkpoint version {version}")
    header_size = HEADER_SIZES[version]
    if len(data) < header_size + 4:
        raise FormatError(f"{path}: truncated: {len(data)} bytes, shorter than the header")
    esize, length = struct.unpack_from("<IQ", data, 12)
    if length != len(data):
        raise FormatError(f"{path}: truncated or damaged: {len(data)} bytes, header says {length}")
    stored = struct.unpack_from("<I", data, len(data) - 4)[0]
    computed = zlib.crc32(memoryview(data)[: len(data) - 4]) & 0xFFFFFFFF
    if stored != computed:
        raise FormatError(f"{path}: corrupted: checksum mismatch (stored {stored:08x}, "
                          f"computed {computed:08x})")
    if esize not in (4, 8):
        raise FormatError(f"{path}: unsupported element size {esize}")
    dtype = np.dtype("<f4" if esize == 4 else "<f8")

    (h, w, c, levels, depth, width, coupling, permutation) = struct.unpack_from("<8i", data, 24)
    cname, pname = _name16(data[56:72]), _name16(data[72:88])
    learntop, n_classes, ycond, n_bits = struct.unpack_from("<4i", data, 88)
    weight_y, seed = struct.unpack_from("<dQ", data, 104)
    if not (0 <= coupling < 2 and COUPLINGS[coupling] == cname and
            0 <= permutation < 4 and PERMUTATIONS[permutation] == pname):
        raise FormatError(f"{path}: coupling/permutation codes and names disagree")
    scale, sname, prior = 0, "sigmoid", 0  # version 1: the paper's scale and free prior
    if version >= 2:
        scale, prior = struct.unpack_from("<ii", data, 272)
        sname = _name16(data[280:296])
    if not (0 <= scale < 2 and SCALES[scale] == sname):
        raise FormatError(f"{path}: affine scale code and name disagree")
    if not 0 <= prior < 2:
        raise FormatError(f"{path}: unknown prior log-std code {prior}")
    config = dict(image_h=h, image_w=w, image_c=c, levels=levels, depth=depth, width=width,
                  coupling=cname, affine_scale=sname, prior_logs=PRIOR_LOGS[prior],
                  permutation=pname, learntop=learntop,
                  n_classes=n_classes,
                  ycond=ycond, n_bits=n_bits, weight_y=weight_y, seed=seed)

    has_state, batch = struct.unpack_from("<Ii", data, 120)
    step, epoch, batch_in_epoch, skipped = struct.unpack_from("<4q", data, 128)
    data_seed = struct.unpack_from("<Q", data, 160)[0]
    state = dict(step=step, epoch=epoch, batch_in_epoch=batch_in_epoch, skipped=skipped,
                 data_seed=data_seed, batch=batch) if has_state else None

    has_opt, kind = struct.unpack_from("<Ii", data, 168)
    lr, beta1, beta2, eps, grad_clip, polyak = struct.unpack_from("<6d", data, 192)
    warmup = struct.unpack_from("<i", data, 240)[0]
    opt_step = struct.unpack_from("<q", data, 248)[0]
    optimizer = None
    if has_opt:
        if not (0 <= kind < 2 and OPTIMIZERS[kind] == _name16(data[176:192])):
            raise FormatError(f"{path}: optimizer code and name disagree")
        optimizer = dict(kind=OPTIMIZERS[kind], lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                         warmup=warmup, grad_clip=grad_clip, polyak=polyak, step=opt_step)

    n_tensors, n_sections, n_params = struct.unpack_from("<IIQ", data, 256)
    if n_sections != (4 if has_opt else 1):
        raise FormatError(f"{path}: {n_sections} sections with optimizer flag {has_opt}")
    pos = header_size
    end = len(data) - 4

    def need(k):
        if pos + k > end:
            raise FormatError(f"{path}: malformed: runs past the end at byte {pos}")

    tensors = []
    next_offset = 0
    for i in range(n_tensors):
        need(2)
        (nlen,) = struct.unpack_from("<H", data, pos)
        need(2 + nlen + 4)
        name = data[pos + 2: pos + 2 + nlen].decode("ascii")
        pos += 2 + nlen
        (ndim,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if not 1 <= ndim <= 4:
            raise FormatError(f"{path}: tensor {name}: ndim {ndim}")
        need(4 * ndim + 24)
        shape = struct.unpack_from(f"<{ndim}i", data, pos)
        pos += 4 * ndim
        trainable, tes, offset, size = struct.unpack_from("<IIQQ", data, pos)
        pos += 24
        if tes != esize or offset != next_offset or size != int(np.prod(shape)):
            raise FormatError(f"{path}: tensor {name}: inconsistent directory entry")
        next_offset += size
        tensors.append(dict(name=name, shape=tuple(shape), trainable=trainable, offset=offset,
                            size=size))
    if next_offset != n_params:
        raise FormatError(f"{path}: the directory covers {next_offset} of {n_params} values")

    sections = {}
    for want in SECTIONS[:n_sections]:
        need(2)
        (nlen,) = struct.unpack_from("<H", data, pos)
        need(2 + nlen + 8)
        name = data[pos + 2: pos + 2 + nlen].decode("ascii")
        (nbytes,) = struct.unpack_from("<Q", data, pos + 2 + nlen)
        pos += 2 + nlen + 8
        if name != want or nbytes != n_params * esize:
            raise FormatError(f"{path}: section {name!r} ({nbytes} bytes) where {want!r} "
                              f"({n_params * esize} bytes) belongs")
        need(nbytes)
        sections[name] = np.frombuffer(data, dtype, n_params, pos).astype(np.float64)
        pos += nbytes
    if pos != end:
        raise FormatError(f"{path}: {end - pos} unexpected bytes after the last section")
    return dict(version=version, element_size=esize, length=len(data), crc=stored, config=config, state=state,
                optimizer=optimizer, tensors=tensors, sections=sections)


def print_checkpoint(ck, path):
    print(f"{path}: glow checkpoint version {ck['version']}, {ck['length']} bytes, "
          f"float{8 * ck['element_size']}, CRC-32 {ck['crc']:08x} (ok)")
    print("config:    " + ", ".join(f"{k}={v}" for k, v in ck["config"].items()))
    st = ck["state"]
    print("state:     " + (", ".join(f"{k}={v}" for k, v in st.items()) if st else "none"))
    op = ck["optimizer"]
    print("optimizer: " + (", ".join(f"{k}={v}" for k, v in op.items()) if op else "none"))
    n = sum(t["size"] for t in ck["tensors"])
    ntr = sum(t["size"] for t in ck["tensors"] if t["trainable"])
    print(f"sections:  {', '.join(ck['sections'])}")
    print(f"tensors:   {len(ck['tensors'])}, {n} values ({ntr} trainable)")
    for t in ck["tensors"]:
        shape = "x".join(str(s) for s in t["shape"])
        line = f"  {t['name']:<44} {shape:<16} offset {t['offset']:<10}"
        print((line + ("" if t["trainable"] else " fixed")).rstrip())


# ---- the model, from docs/MODEL.md: an independent NumPy implementation -----------------

def squeeze(x):
    """(B,H,W,C) -> (B,H/2,W/2,4C): pixel (2i+dy, 2j+dx) channel c -> (i,j) channel c*4+dy*2+dx."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // 2, 2, w // 2, 2, c)
    return x.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, 4 * c)


def conv3x3(x, weight, bias=None):
    """SAME zero-padded 3x3 convolution, weight (Cout, 3, 3, Cin)."""
    b, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, w, weight.shape[0]))
    for ky in range(3):
        for kx in range(3):
            out += xp[:, ky:ky + h, kx:kx + w, :] @ weight[:, ky, kx, :].T
    return out if bias is None else out + bias


def actnorm(x, bias, logs):
    return (x + bias) * np.exp(3.0 * logs)


def zeroconv(x, weight, bias, logs):
    return conv3x3(x, weight, bias) * np.exp(3.0 * logs)


def log_normal(z, mean, logs):
    """Sum over all but the batch axis of log N(z; mean, exp(logs)^2)."""
    v = -0.5 * (np.log(2 * np.pi) + 2.0 * logs + (z - mean) ** 2 * np.exp(-2.0 * logs))
    return v.reshape(v.shape[0], -1).sum(axis=1)


def log_prob(ck, x, y=None, use_average=False):
    """log p(x) in nats and bits/dim for preprocessed images x (B,H,W,C)."""
    cfg = ck["config"]
    flat = ck["sections"]["average" if use_average and "average" in ck["sections"] else "params"]
    p = {t["name"]: flat[t["offset"]: t["offset"] + t["size"]].reshape(t["shape"])
         for t in ck["tensors"]}
    x = np.asarray(x, dtype=np.float64)
    batch = x.shape[0]
    dim = cfg["image_h"] * cfg["image_w"] * cfg["image_c"]
    if x.shape[1:] != (cfg["image_h"], cfg["image_w"], cfg["image_c"]):
        raise ValueError(f"images {x.shape[1:]}, the model wants "
                         f"{(cfg['image_h'], cfg['image_w'], cfg['image_c'])}")
    logdet = np.zeros(batch)
    logp = np.zeros(batch)

    def prior_logs(v):  # the priors' log std from the value their layer computes
        return 3.0 * np.tanh(v / 3.0) if cfg["prior_logs"] == "tanh" else v

    h = squeeze(x)
    for lv in range(cfg["levels"]):
        hw = h.shape[1] * h.shape[2]
        c = h.shape[3]
        half = c // 2
        for k in range(cfg["depth"]):
            s = f"level{lv}.step{k}."
            h = actnorm(h, p[s + "actnorm.bias"], p[s + "actnorm.logs"])
            logdet += hw * 3.0 * p[s + "actnorm.logs"].sum()
            perm = cfg["permutation"]
            if perm == "reverse":
                h = h[..., ::-1]
            elif perm == "shuffle":
                h = h[..., np.rint(p[s + "shuffle.perm"]).astype(np.int64)]
            elif perm == "invconv":
                wm = p[s + "invconv.weight"]
                h = h @ wm.T
                logdet += hw * np.linalg.slogdet(wm)[1]
            else:
                lower = np.tril(p[s + "invconv.lower"], -1) + np.eye(c)
                upper = np.triu(p[s + "invconv.upper"], 1) + np.diag(
                    p[s + "invconv.sign"] * np.exp(p[s + "invconv.log_s"]))
                wm = (lower @ upper)[np.rint(p[s + "invconv.perm"]).astype(np.int64)]
                h = h @ wm.T
                logdet += hw * p[s + "invconv.log_s"].sum()
            z1, z2 = h[..., :half], h[..., half:]
            r = conv3x3(z1, p[s + "coupling.conv1.weight"])
            r = np.maximum(actnorm(r, p[s + "coupling.actnorm1.bias"],
                                   p[s + "coupling.actnorm1.logs"]), 0)
            r = r @ p[s + "coupling.conv2.weight"].T
            r = np.maximum(actnorm(r, p[s + "coupling.actnorm2.bias"],
                                   p[s + "coupling.actnorm2.logs"]), 0)
            nn = zeroconv(r, p[s + "coupling.conv3.weight"], p[s + "coupling.conv3.bias"],
                          p[s + "coupling.conv3.logs"])
            if cfg["coupling"] == "additive":
                z2 = z2 + nn
            elif cfg["affine_scale"] == "tanh":
                log_scale = np.tanh(nn[..., 1::2])
                z2 = (z2 + nn[..., 0::2]) * np.exp(log_scale)
                logdet += log_scale.reshape(batch, -1).sum(axis=1)
            else:
                pre = nn[..., 1::2] + 2.0
                z2 = (z2 + nn[..., 0::2]) / (1.0 + np.exp(-pre))
                logdet += -np.logaddexp(0, -pre).reshape(batch, -1).sum(axis=1)
            h = np.concatenate([z1, z2], axis=-1)
        if lv < cfg["levels"] - 1:
            z1, z2 = h[..., :half], h[..., half:]
            ph = zeroconv(z1, p[f"level{lv}.prior.weight"], p[f"level{lv}.prior.bias"],
                          p[f"level{lv}.prior.logs"])
            logp += log_normal(z2, ph[..., 0::2], prior_logs(ph[..., 1::2]))
            h = squeeze(z1)
        else:
            mean = np.zeros_like(h)
            logs = np.zeros_like(h)
            if cfg["learntop"]:
                top = p["top.prior.bias"]
                mean = mean + top[..., :c]
                logs = logs + top[..., c:]
            if cfg["ycond"]:
                labels = np.zeros(batch, np.int64) if y is None else np.asarray(y, np.int64)
                rows = p["top.ycond.weight"][labels]  # (B, 2c)
                mean = mean + rows[:, None, None, :c]
                logs = logs + rows[:, None, None, c:]
            logp += log_normal(h, mean, prior_logs(logs))
    total = logdet + logp - dim * cfg["n_bits"] * np.log(2.0)
    return total, -total / (dim * np.log(2.0))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--logp", metavar="X.npy", help="preprocessed images (B,H,W,C)")
    ap.add_argument("--labels", metavar="Y.npy", help="class labels (B) for ycond models")
    ap.add_argument("--average", action="store_true", help="use the Polyak average")
    args = ap.parse_args(argv)
    try:
        ck = read_checkpoint(args.file)
    except (OSError, FormatError) as e:
        print(f"glow_checkpoint: {e}", file=sys.stderr)
        return 1
    if not args.logp:
        print_checkpoint(ck, args.file)
        return 0
    x = np.load(args.logp)
    y = np.load(args.labels) if args.labels else None
    lp, bpd = log_prob(ck, x, y, args.average)
    for i in range(len(lp)):
        print(f"{i} {lp[i]:.10f} {bpd[i]:.10f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:  # e.g. piped into head
        sys.exit(0)
