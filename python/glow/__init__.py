"""glow: Glow (Kingma & Dhariwal, 2018) from Python, over libglow.so.

Images are uint8 NumPy arrays of shape (N, H, W, C); latents are float32 arrays of shape
(N, D), D = H * W * C, in the layout of docs/MODEL.md (the factored-out latents of each
level, then the top latent).

    import glow
    train, labels = glow.load_dataset("/usr/share/datasets/fashion-mnist", "train")
    trainer = glow.Trainer(train, steps=500, callback=print)
    trainer.run()
    model = trainer.model
    z = model.encode(train[:8])            # exact: model.decode(z) gives the images back
    print(model.bits_per_dim(train[:8]))   # per image, as `glow eval` computes it
    model.save("model.glow")

The library is found through GLOW_LIBRARY (a path to libglow.so), then the build/ folder of
the source tree this module sits in, then the system's library path.
"""
import ctypes
import ctypes.util
import os
import threading

import numpy as np

__all__ = ["Model", "Trainer", "GlowError", "load_dataset", "plot", "version"]


class GlowError(RuntimeError):
    """A failure reported by the library, with its one-line message."""


def _find_library():
    candidates = []
    if os.environ.get("GLOW_LIBRARY"):
        candidates.append(os.environ["GLOW_LIBRARY"])
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "build", "libglow.so"))
    found = ctypes.util.find_library("glow")
    if found:
        candidates.append(found)
    for path in candidates:
        if os.path.exists(path) or not os.path.dirname(path):
            try:
                return ctypes.CDLL(path)
            except OSError:
                continue
    raise ImportError("libglow.so not found: build it (make) or set GLOW_LIBRARY")


# Waiting OpenMP threads sleep instead of spinning (read when libgomp loads, as glow's
# glow_tune_environment sets it for the command): spinning threads take the cores from
# Python and from other processes.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
_lib = _find_library()

_real = ctypes.c_float  # the float build is the shared library's
_MAX_LEVELS = 16
_GLOW_OK, _GLOW_DONE = 0, 1


# ---- the C structs this module passes (glow.h) ----------------------------------------

class _Config(ctypes.Structure):
    _fields_ = [("image_h", ctypes.c_int), ("image_w", ctypes.c_int), ("image_c", ctypes.c_int),
                ("levels", ctypes.c_int), ("depth", ctypes.c_int), ("width", ctypes.c_int),
                ("coupling", ctypes.c_int), ("permutation", ctypes.c_int),
                ("affine_scale", ctypes.c_int), ("prior_logs", ctypes.c_int),
                ("learntop", ctypes.c_int), ("n_classes", ctypes.c_int), ("ycond", ctypes.c_int),
                ("weight_y", ctypes.c_double), ("n_bits", ctypes.c_int),
                ("seed", ctypes.c_uint64)]


class _Dataset(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int), ("h", ctypes.c_int), ("w", ctypes.c_int), ("c", ctypes.c_int),
                ("pixels", ctypes.c_void_p), ("labels", ctypes.c_void_p),
                ("n_classes", ctypes.c_int), ("n_attrs", ctypes.c_int),
                ("attr_names", ctypes.c_void_p), ("attrs", ctypes.c_void_p),
                ("class_names", ctypes.c_void_p), ("names", ctypes.c_void_p)]


class _OptimConfig(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("lr", ctypes.c_double), ("beta1", ctypes.c_double),
                ("beta2", ctypes.c_double), ("eps", ctypes.c_double), ("warmup", ctypes.c_int),
                ("grad_clip", ctypes.c_double), ("polyak", ctypes.c_double)]


class _LevelStats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in (
        "min_coupling_logs", "max_coupling_shift", "min_actnorm_logs", "min_invconv_logs",
        "min_prior_logs", "max_abs_z", "max_z_score", "logdet_bpd", "prior_bpd")]


class _Event(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("step", ctypes.c_int64), ("total", ctypes.c_int64),
                ("epoch", ctypes.c_double), ("seconds", ctypes.c_double),
                ("n_steps", ctypes.c_int), ("train_bpd", ctypes.c_double),
                ("max_step_bpd", ctypes.c_double), ("img_per_s", ctypes.c_double),
                ("step_seconds", ctypes.c_double), ("grad_norm", ctypes.c_double),
                ("lr", ctypes.c_double), ("max_rebuild_error", ctypes.c_double),
                ("redone", ctypes.c_int), ("redone_total", ctypes.c_int64),
                ("skipped", ctypes.c_int64), ("kept_steps", ctypes.c_int),
                ("comm_share", ctypes.c_double), ("level", _LevelStats * _MAX_LEVELS), ("test_bpd", ctypes.c_double),
                ("test_n", ctypes.c_int), ("best", ctypes.c_int),
                ("samples", ctypes.c_void_p), ("n_samples", ctypes.c_int),
                ("message", ctypes.c_char_p), ("path", ctypes.c_char_p)]


_Callback = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Event), ctypes.c_void_p)


class _TrainOptions(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int), ("init_batch", ctypes.c_int), ("steps", ctypes.c_int64),
                ("optim", _OptimConfig), ("max_skips", ctypes.c_int), ("log_every", ctypes.c_int),
                ("eval_every", ctypes.c_int), ("eval_n", ctypes.c_int),
                ("sample_every", ctypes.c_int), ("n_samples", ctypes.c_int),
                ("temperature", ctypes.c_double), ("checkpoint", ctypes.c_char_p),
                ("save_every", ctypes.c_int), ("save_seconds", ctypes.c_double),
                ("threads", ctypes.c_int), ("matmul", ctypes.c_int),
                ("activation_memory", ctypes.c_size_t), ("callback", _Callback),
                ("user", ctypes.c_void_p), ("comm", ctypes.c_void_p)]


class _TrainState(ctypes.Structure):
    _fields_ = [("step", ctypes.c_int64), ("epoch", ctypes.c_int64),
                ("batch_in_epoch", ctypes.c_int64), ("skipped", ctypes.c_int64),
                ("data_seed", ctypes.c_uint64), ("batch", ctypes.c_int)]


def _declare(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


_p = ctypes.c_void_p
_ptr = ctypes.POINTER
_version = _declare("glow_version", ctypes.c_char_p)
_last_error = _declare("glow_last_error", ctypes.c_char_p)
_config_default = _declare("glow_config_default", None, _ptr(_Config))
_config = _declare("glow_model_config", _ptr(_Config), _p)
_model_create = _declare("glow_model_create", _p, _ptr(_Config))
_model_free = _declare("glow_model_free", None, _p)
_model_dim = _declare("glow_model_dim", ctypes.c_size_t, _p)
_n_params = _declare("glow_model_n_trainable", ctypes.c_size_t, _p)
_load = _declare("glow_checkpoint_load", _p, ctypes.c_char_p, ctypes.c_int, _p, _p)
_save = _declare("glow_checkpoint_save", ctypes.c_int, ctypes.c_char_p, _p, _p, _p)
_ctx_create = _declare("glow_ctx_create", _p, ctypes.c_int)
_ctx_free = _declare("glow_ctx_free", None, _p)
_ctx_error = _declare("glow_ctx_error", ctypes.c_char_p, _p)
_evaluate = _declare("glow_evaluate", ctypes.c_int, _p, _p, _ptr(_Dataset), ctypes.c_int,
                     ctypes.c_int, ctypes.c_uint64, _p)
_encode = _declare("glow_encode_images", ctypes.c_int, _p, _p, _p, _p, ctypes.c_int,
                   ctypes.c_int, _p, _p)
_decode = _declare("glow_decode_latents", ctypes.c_int, _p, _p, _p, _p, ctypes.c_int,
                   ctypes.c_int, _p, _p)
_sample = _declare("glow_model_sample", ctypes.c_int, _p, _p, _p, ctypes.c_int,
                   ctypes.c_double, ctypes.c_uint64, _p)
_postprocess = _declare("glow_postprocess", None, _p, _p, ctypes.c_int, ctypes.c_size_t,
                        ctypes.c_int)
_dataset_load = _declare("glow_dataset_load", ctypes.c_int, _ptr(_Dataset), ctypes.c_char_p,
                         ctypes.c_char_p, ctypes.c_int)
_dataset_free = _declare("glow_dataset_free", None, _ptr(_Dataset))
_options_default = _declare("glow_train_options_default", None, _ptr(_TrainOptions))
_trainer_create = _declare("glow_trainer_create", _p, _ptr(_Config), _ptr(_Dataset),
                           _ptr(_Dataset), _ptr(_TrainOptions))
_trainer_resume = _declare("glow_trainer_resume", _p, ctypes.c_char_p, _ptr(_Dataset),
                           _ptr(_Dataset), _ptr(_TrainOptions))
_trainer_free = _declare("glow_trainer_free", None, _p)
_trainer_step = _declare("glow_trainer_step", ctypes.c_int, _p)
_trainer_save = _declare("glow_trainer_save", ctypes.c_int, _p, ctypes.c_char_p)
_trainer_evaluate = _declare("glow_trainer_evaluate", ctypes.c_int, _p, ctypes.c_int,
                             _ptr(ctypes.c_double))
_trainer_model = _declare("glow_trainer_model", _p, _p)
_trainer_state = _declare("glow_trainer_state", _ptr(_TrainState), _p)
_trainer_error = _declare("glow_trainer_error", ctypes.c_char_p, _p)
_plot_write = _declare("glow_plot_write", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, _p,
                       _p, _p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)

_ENUMS = {
    "coupling": {"additive": 0, "affine": 1},
    "permutation": {"reverse": 0, "shuffle": 1, "invconv": 2, "invconv-lu": 3},
    "affine_scale": {"sigmoid": 0, "tanh": 1},
    "prior_logs": {"free": 0, "tanh": 1},
}


def version():
    """The library's version string."""
    return _version().decode()


def plot(path, series, x=None, title="", width=800, height=480):
    """A line plot as a PNG (glow_plot_write: axes, ticks, legend; NaN points skipped).
    series: {label: values}, all of one length; x: their abscissae (default 0, 1, ...)."""
    labels = list(series)
    ys = [np.ascontiguousarray(series[k], dtype=np.float64) for k in labels]
    n = len(ys[0]) if ys else 0
    if not ys or any(len(y) != n for y in ys):
        raise ValueError("plot: give one or more series of the same length")
    xs = None if x is None else np.ascontiguousarray(x, dtype=np.float64)
    if xs is not None and len(xs) != n:
        raise ValueError("plot: x and the series differ in length")
    y_ptrs = (ctypes.c_void_p * len(ys))(*[y.ctypes.data for y in ys])
    names = (ctypes.c_char_p * len(ys))(*[str(k).encode() for k in labels])
    rc = _plot_write(str(path).encode(), title.encode(), None if xs is None else xs.ctypes.data,
                     ctypes.cast(y_ptrs, _p), ctypes.cast(names, _p), len(ys), n, width, height)
    if rc != _GLOW_OK:
        raise GlowError(_last_error().decode())


def _error(message=None):
    return GlowError(message or _last_error().decode())


def _images(x, name="images"):
    x = np.ascontiguousarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"{name}: expected uint8 of shape (N, H, W, C), got {x.dtype} {x.shape}")
    return x


def _labels(y, n):
    if y is None:
        return None
    y = np.ascontiguousarray(y, dtype=np.int32)
    if y.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},), got {y.shape}")
    return y


def _ptr_of(a):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


def _dataset(x, y):
    """A glow_dataset over NumPy arrays (which must outlive it)."""
    d = _Dataset()
    d.n, d.h, d.w, d.c = x.shape
    d.pixels = _ptr_of(x)
    if y is not None:
        d.labels = _ptr_of(y)
        d.n_classes = int(y.max()) + 1 if len(y) else 0
    return d


def load_dataset(path, split="train", image_size=0):
    """A data set glow reads (IDX, CIFAR-10 or an image folder) as (images, labels): uint8
    (N, H, W, C) and int32 (N,), or None where it has no labels."""
    d = _Dataset()
    if _dataset_load(ctypes.byref(d), path.encode(), split.encode(), image_size) != _GLOW_OK:
        raise _error()
    try:
        shape = (d.n, d.h, d.w, d.c)
        images = np.ctypeslib.as_array(ctypes.cast(d.pixels, _ptr(ctypes.c_uint8)),
                                       shape=(int(np.prod(shape)),)).reshape(shape).copy()
        labels = None
        if d.labels:
            labels = np.ctypeslib.as_array(ctypes.cast(d.labels, _ptr(ctypes.c_int)),
                                           shape=(d.n,)).astype(np.int32)
        return images, labels
    finally:
        _dataset_free(ctypes.byref(d))


class Model:
    """A trained (or fresh) Glow model. Its passes are exact: decode(encode(x)) == x."""

    def __init__(self, handle, owner=None, batch=256):
        self._handle = handle
        self._owner = owner  # what keeps the handle alive, when this object does not own it
        self._local = threading.local()  # a compute context per thread
        self._contexts = []
        self.batch = batch

    @classmethod
    def load(cls, path, average=True):
        """The model of a checkpoint: its Polyak average (as glow eval and sample use) or,
        with average=False, the raw weights."""
        handle = _load(os.fsencode(path), 1 if average else 0, None, None)
        if not handle:
            raise _error()
        return cls(handle)

    @classmethod
    def create(cls, image_shape=(28, 28, 1), **config):
        """A freshly initialised model (no data-dependent init: train it with Trainer)."""
        handle = _model_create(ctypes.byref(_make_config(image_shape, config)))
        if not handle:
            raise _error()
        return cls(handle)

    def __del__(self):
        for ctx in getattr(self, "_contexts", []):
            _ctx_free(ctx)
        if getattr(self, "_owner", True) is None and self._handle:
            _model_free(self._handle)

    def _ctx(self):
        ctx = getattr(self._local, "ctx", None)
        if ctx is None:
            ctx = _ctx_create(0)
            if not ctx:
                raise _error()
            self._local.ctx = ctx
            self._contexts.append(ctx)
        return ctx

    def _check(self, rc, ctx):
        if rc != _GLOW_OK:
            raise GlowError(_ctx_error(ctx).decode() or _last_error().decode())

    @property
    def config(self):
        """The hyperparameters, as a dict."""
        c = _config(self._handle).contents
        names = {k: {v: n for n, v in m.items()} for k, m in _ENUMS.items()}
        out = {}
        for field, _ in _Config._fields_:
            value = getattr(c, field)
            out[field] = names[field][value] if field in names else value
        return out

    @property
    def image_shape(self):
        c = _config(self._handle).contents
        return (c.image_h, c.image_w, c.image_c)

    @property
    def dim(self):
        return int(_model_dim(self._handle))

    @property
    def n_parameters(self):
        return int(_n_params(self._handle))

    def _conditional(self):
        c = _config(self._handle).contents
        return c.ycond or c.weight_y > 0

    def _fits(self, x):
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"images of shape {x.shape[1:]}, the model takes {self.image_shape}")

    def bits_per_dim(self, x, labels=None, seed=0):
        """Exact bits/dim of each image (float64, (N,)), with the dequantisation noise of
        image i drawn from (seed, i): the figure `glow eval` gives."""
        x = _images(x)
        self._fits(x)
        y = _labels(labels, len(x))
        out = np.empty(len(x), dtype=np.float64)
        d = _dataset(x, y)
        ctx = self._ctx()
        self._check(_evaluate(ctx, self._handle, ctypes.byref(d), len(x), self.batch, seed,
                              _ptr_of(out)), ctx)
        return out

    def encode(self, x, labels=None):
        """Latents (float32, (N, D)) of images encoded from the centre of their bins."""
        x = _images(x)
        self._fits(x)
        y = _labels(labels, len(x))
        z = np.empty((len(x), self.dim), dtype=np.float32)
        ctx = self._ctx()
        self._check(_encode(ctx, self._handle, _ptr_of(x), _ptr_of(y), len(x), self.batch,
                            _ptr_of(z), None), ctx)
        return z

    def decode(self, z, labels=None):
        """Images (uint8, (N, H, W, C)) from latents (N, D): the exact inverse of encode."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"latents: expected shape (N, {self.dim}), got {z.shape}")
        y = _labels(labels, len(z))
        x = np.empty_like(z)
        ctx = self._ctx()
        self._check(_decode(ctx, self._handle, _ptr_of(z), _ptr_of(y), len(z), self.batch,
                            _ptr_of(x), None), ctx)
        return self._pixels(x)

    def sample(self, n, temperature=0.7, seed=0, labels=None):
        """n images drawn at a temperature (deterministic in seed)."""
        y = _labels(labels, n)
        x = np.empty((n, self.dim), dtype=np.float32)
        ctx = self._ctx()
        self._check(_sample(ctx, self._handle, _ptr_of(y), n, float(temperature), seed,
                            _ptr_of(x)), ctx)
        return self._pixels(x)

    def _pixels(self, x):
        px = np.empty((len(x),) + self.image_shape, dtype=np.uint8)
        _postprocess(_ptr_of(px), _ptr_of(x), len(x), self.dim,
                     _config(self._handle).contents.n_bits)
        return px

    def save(self, path):
        """Write the model's weights as a checkpoint (atomically; no optimizer state)."""
        if _save(os.fsencode(path), self._handle, None, None) != _GLOW_OK:
            raise _error()


def _make_config(image_shape, config):
    c = _Config()
    _config_default(ctypes.byref(c))
    c.image_h, c.image_w, c.image_c = image_shape
    for key, value in config.items():
        if not hasattr(c, key):
            raise TypeError(f"unknown model option {key!r}")
        if key in _ENUMS:
            if value not in _ENUMS[key]:
                raise ValueError(f"{key} {value!r}: expected one of {sorted(_ENUMS[key])}")
            value = _ENUMS[key][value]
        setattr(c, key, value)
    return c


_OPTIONS = {"batch", "init_batch", "steps", "max_skips", "log_every", "eval_every", "eval_n",
            "sample_every", "n_samples", "temperature", "save_every", "save_seconds", "threads"}
_OPTIM = {"lr", "warmup", "grad_clip", "polyak"}


class Trainer:
    """Training by maximum likelihood from NumPy arrays: the library's trainer (init,
    Adam, the skip policy, the Polyak average, evaluation, samples and checkpoints).

    images, labels: the training set; test_images, test_labels: evaluated on (default:
    the training set). Model options (depth=, width=, coupling=, ...) and training options
    (batch=, steps=, lr=, eval_every=, ...) as glow train has them. callback(event) gets
    each event as a dict: kind "log" (step, train_bpd, img_per_s, ...), "eval" (test_bpd),
    "sample" (samples: uint8 images), "skip" (message) or "save" (path). With checkpoint=
    and resume=True, the run in that file continues exactly."""

    _KINDS = ["log", "skip", "eval", "sample", "save"]

    def __init__(self, images, labels=None, test_images=None, test_labels=None,
                 checkpoint=None, resume=False, callback=None, **options):
        self._x = _images(images)
        self._y = _labels(labels, len(self._x))
        self._tx = self._x if test_images is None else _images(test_images, "test_images")
        self._ty = self._y if test_images is None else _labels(test_labels, len(self._tx))
        self._train = _dataset(self._x, self._y)
        self._test = _dataset(self._tx, self._ty)
        self.callback = callback
        o = _TrainOptions()
        _options_default(ctypes.byref(o))
        config = {}
        for key, value in options.items():
            if key in _OPTIONS:
                setattr(o, key, value)
            elif key in _OPTIM:
                setattr(o.optim, key, value)
            else:
                config[key] = value
        self._checkpoint = os.fsencode(checkpoint) if checkpoint else None
        o.checkpoint = self._checkpoint
        self._cb = _Callback(self._on_event)  # kept alive with the trainer
        o.callback = self._cb
        self._options = o
        shape = self._x.shape[1:]
        if resume:
            if config:
                raise TypeError(f"model options {sorted(config)} come from the checkpoint when resuming")
            if not checkpoint:
                raise ValueError("resume=True needs checkpoint=")
            if "batch" not in options:
                o.batch = 0
            handle = _trainer_resume(self._checkpoint, ctypes.byref(self._train),
                                     ctypes.byref(self._test), ctypes.byref(o))
        else:
            cfg = _make_config(shape, config)
            handle = _trainer_create(ctypes.byref(cfg), ctypes.byref(self._train),
                                     ctypes.byref(self._test), ctypes.byref(o))
        if not handle:
            raise _error()
        self._handle = handle
        self.model = Model(_trainer_model(handle), owner=self, batch=max(o.batch, 1))

    def __del__(self):
        if getattr(self, "_handle", None):
            _trainer_free(self._handle)
            self._handle = None

    def _on_event(self, event, user):
        if self.callback is None:
            return
        e = event.contents
        kind = self._KINDS[e.kind]
        out = {"kind": kind, "step": e.step, "total": e.total, "epoch": e.epoch,
               "seconds": e.seconds}
        if kind == "log":
            out.update(train_bpd=e.train_bpd, max_step_bpd=e.max_step_bpd,
                       img_per_s=e.img_per_s, grad_norm=e.grad_norm, lr=e.lr,
                       redone=e.redone, skipped=e.skipped)
        elif kind == "eval":
            out.update(test_bpd=e.test_bpd, test_n=e.test_n, best=bool(e.best))
        elif kind == "sample":
            shape = (e.n_samples,) + self._x.shape[1:]
            buf = ctypes.cast(e.samples, _ptr(ctypes.c_uint8))
            out["samples"] = np.ctypeslib.as_array(buf, shape=(int(np.prod(shape)),)).reshape(shape).copy()
        elif kind == "skip":
            out["message"] = e.message.decode()
        elif kind == "save":
            out["path"] = e.path.decode()
        self.callback(out)

    @property
    def step_count(self):
        """Optimizer steps done."""
        return _trainer_state(self._handle).contents.step

    def step(self):
        """One optimizer step (or a skipped one) and what its cadence asks for. False once
        every step is done."""
        rc = _trainer_step(self._handle)
        if rc == _GLOW_DONE:
            return False
        if rc != _GLOW_OK:
            raise GlowError(_trainer_error(self._handle).decode())
        return True

    def run(self, steps=None):
        """Train to the end (or for `steps` more steps); returns the steps done in all."""
        target = None if steps is None else self.step_count + steps
        while (target is None or self.step_count < target) and self.step():
            pass
        return self.step_count

    def evaluate(self, n=0):
        """Mean test bits/dim of the Polyak average over the first n test images (0: all)."""
        out = ctypes.c_double()
        if _trainer_evaluate(self._handle, n, ctypes.byref(out)) != _GLOW_OK:
            raise GlowError(_trainer_error(self._handle).decode())
        return out.value

    def save(self, path=None):
        """Save the run (weights, optimizer, counters) to path (default: checkpoint=)."""
        if _trainer_save(self._handle, os.fsencode(path) if path else None) != _GLOW_OK:
            raise GlowError(_trainer_error(self._handle).decode())
