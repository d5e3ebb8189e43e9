"""nomul.optim — nomul's optimizers, gradient clipping and learning-rate
schedules (nomul/optim.h) on numpy float32 arrays, updated in place by the C
functions `nomul train` runs: float, or piecewise affine throughout when the
configuration (`opt_functional_cfg`; an OpCfg or a subtype name) is "pam".

    opt = AdamW(lr=2e-3, weight_decay=0.05, cfg="pam", betas=(0.9, 0.999))
    m, v = np.zeros_like(p), np.zeros_like(p)
    opt.begin_step()                     # once per step (t, β^t)
    opt.update(p, g, m, v)               # every tensor; decay=False: no weight decay

AdamW is fairseq's Adam with decoupled weight decay (nomul/optim.h gives the
formulas); SGD is PyTorch's. nomul.torch.optim wraps both as torch optimizers.
"""
import ctypes

import numpy as np

from ._lib import call, f32_check
from .gemm import _CCfg, as_cfg

__all__ = ["AdamW", "SGD", "clip_grad_norm", "schedule_lr", "schedule_table", "MOMENTS"]

MOMENTS = {"reference": 0, "delta": 1}
_SCHEDULES = {"constant": 0, "cosine": 1, "inverse_sqrt": 2}


class _CAdamW(ctypes.Structure):
    _fields_ = [("lr", ctypes.c_float), ("beta1", ctypes.c_float), ("beta2", ctypes.c_float),
                ("eps", ctypes.c_float), ("weight_decay", ctypes.c_float), ("cfg", _CCfg),
                ("step", ctypes.c_long), ("beta1_t", ctypes.c_float),
                ("beta2_t", ctypes.c_float), ("moments", ctypes.c_int)]


class _CSGD(ctypes.Structure):
    _fields_ = [("lr", ctypes.c_float), ("momentum", ctypes.c_float),
                ("weight_decay", ctypes.c_float), ("nesterov", ctypes.c_int), ("cfg", _CCfg)]


def _inplace(a, name, shape=None):
    f32_check(a, name)
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError("nomul: %s is updated in place: it must be C-contiguous and writeable"
                         % name)
    if shape is not None and a.shape != shape:
        raise ValueError("nomul: %s has shape %s, expected %s" % (name, a.shape, shape))
    return a


def _grad(g, shape):
    f32_check(g, "g")
    if g.shape != shape:
        raise ValueError("nomul: g has shape %s, expected %s" % (g.shape, shape))
    return np.ascontiguousarray(g)


class AdamW:
    """nomul_adamw: lr, betas, eps, weight_decay as the trainer's keys (defaults
    as nomul_adamw_init: β = (0.9, 0.98), ε = 1e-8), cfg the
    opt_functional_cfg, moments "reference" or "delta" (PA only)."""

    def __init__(self, lr=1e-3, weight_decay=0.0, cfg=None, betas=(0.9, 0.98), eps=1e-8,
                 moments="reference"):
        if moments not in MOMENTS:
            raise ValueError("nomul: moments must be 'reference' or 'delta', got %r" % (moments,))
        self.cfg = as_cfg(cfg)
        self._c = _CAdamW()
        call("nomul_adamw_init", ctypes.addressof(self._c), float(lr), float(weight_decay),
             self.cfg.ref())
        self._c.beta1, self._c.beta2 = float(betas[0]), float(betas[1])
        self._c.eps = float(eps)
        self._c.moments = MOMENTS[moments]

    # the C state, readable and settable (a schedule sets lr between steps)
    lr = property(lambda s: s._c.lr, lambda s, v: setattr(s._c, "lr", float(v)))
    weight_decay = property(lambda s: s._c.weight_decay,
                            lambda s, v: setattr(s._c, "weight_decay", float(v)))
    step = property(lambda s: s._c.step)
    beta_t = property(lambda s: (s._c.beta1_t, s._c.beta2_t))

    def set_state(self, step, beta1_t, beta2_t):
        """Restores t and β^t (a checkpoint's nomul.adam_step, _beta1_t, _beta2_t)."""
        self._c.step, self._c.beta1_t, self._c.beta2_t = int(step), float(beta1_t), float(beta2_t)

    def begin_step(self):
        """Advances t and β^t: once per step, before the updates."""
        call("nomul_adamw_begin_step", ctypes.addressof(self._c))

    def update(self, p, g, m, v, decay=True):
        """Updates p, m and v (float32, C-contiguous, in place) with gradient g;
        decay=False leaves out the weight decay (the trainer's biases, norms,
        tokens)."""
        p = _inplace(p, "p")
        g = _grad(g, p.shape)
        m, v = _inplace(m, "m", p.shape), _inplace(v, "v", p.shape)
        c = self._c
        if not decay and c.weight_decay != 0.0:
            c = _CAdamW.from_buffer_copy(self._c)
            c.weight_decay = 0.0
        call("nomul_adamw_update", ctypes.addressof(c), p.size, p.ctypes.data, g.ctypes.data,
             m.ctypes.data, v.ctypes.data)


class SGD:
    """nomul_sgd: PyTorch's SGD with momentum (buf: zeros at the start),
    weight decay and Nesterov, float or PA (cfg)."""

    def __init__(self, lr=1e-2, momentum=0.0, weight_decay=0.0, nesterov=False, cfg=None):
        self.cfg = as_cfg(cfg)
        self._c = _CSGD()
        call("nomul_sgd_init", ctypes.addressof(self._c), float(lr), float(momentum),
             float(weight_decay), self.cfg.ref())
        self._c.nesterov = int(bool(nesterov))

    lr = property(lambda s: s._c.lr, lambda s, v: setattr(s._c, "lr", float(v)))
    momentum = property(lambda s: s._c.momentum)
    weight_decay = property(lambda s: s._c.weight_decay,
                            lambda s, v: setattr(s._c, "weight_decay", float(v)))

    def update(self, p, g, buf=None, decay=True):
        """Updates p (and buf, the momentum buffer, needed when momentum ≠ 0)
        in place with gradient g."""
        p = _inplace(p, "p")
        g = _grad(g, p.shape)
        if self._c.momentum != 0.0:
            if buf is None:
                raise ValueError("nomul: SGD with momentum needs buf (zeros at the start)")
            buf = _inplace(buf, "buf", p.shape)
        c = self._c
        if not decay and c.weight_decay != 0.0:
            c = _CSGD.from_buffer_copy(self._c)
            c.weight_decay = 0.0
        call("nomul_sgd_update", ctypes.addressof(c), p.size, p.ctypes.data, g.ctypes.data,
             None if buf is None else buf.ctypes.data)


def clip_grad_norm(grads, max_norm, cfg=None):
    """Scales the gradients (float32 arrays, in place) by max_norm / (norm +
    1e-6) when their joint norm exceeds max_norm; returns the norm before
    clipping (float, or PA without the cfg's offset)."""
    cfg = as_cfg(cfg)
    grads = [_inplace(g, "grads[%d]" % i) for i, g in enumerate(grads)]
    n = len(grads)
    ptrs = (ctypes.c_void_p * max(n, 1))(*[g.ctypes.data for g in grads])
    sizes = (ctypes.c_size_t * max(n, 1))(*[g.size for g in grads])
    return float(call("nomul_clip_grad_norm", n, ctypes.addressof(ptrs), ctypes.addressof(sizes),
                      float(max_norm), cfg.ref()))


class _CSchedule(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("lr", ctypes.c_float), ("min_lr", ctypes.c_float),
                ("warmup", ctypes.c_long), ("total", ctypes.c_long)]


def _schedule(kind, lr, min_lr, warmup, total):
    if kind not in _SCHEDULES:
        raise ValueError("nomul: schedule must be one of %s, got %r"
                         % (", ".join(_SCHEDULES), kind))
    return _CSchedule(_SCHEDULES[kind], float(lr), float(min_lr), int(warmup), int(total))


def schedule_table(kind, lr, min_lr, warmup, total):
    """The learning rates of steps 0 .. total−1 (float32), as `nomul train`
    tabulates them: kind "constant", "cosine" (linear warmup, then cosine to
    min_lr) or "inverse_sqrt". The trainer's schedule=constant with a warmup
    is "cosine" with min_lr = lr."""
    s = _schedule(kind, lr, min_lr, warmup, total)
    table = np.empty(max(int(total), 0), dtype=np.float32)
    if call("nomul_schedule_table", ctypes.addressof(s), table.ctypes.data) != 0:
        raise ValueError("nomul: invalid schedule (sizes ≥ 0, warmup ≤ total ≥ 1, "
                         "0 ≤ min_lr ≤ lr): %r" % ((kind, lr, min_lr, warmup, total),))
    return table


def schedule_lr(kind, lr, min_lr, warmup, total, t):
    """The learning rate of step t (0-based, t < total)."""
    s = _schedule(kind, lr, min_lr, warmup, total)
    if not (s.total >= 1 and 0 <= s.warmup <= s.total and 0 <= s.min_lr <= s.lr):
        raise ValueError("nomul: invalid schedule (sizes ≥ 0, warmup ≤ total ≥ 1, "
                         "0 ≤ min_lr ≤ lr): %r" % ((kind, lr, min_lr, warmup, total),))
    if not 0 <= t < s.total:
        raise ValueError("nomul: step %d is outside the schedule's 0..%d" % (t, s.total - 1))
    return float(call("nomul_schedule_lr", ctypes.addressof(s), int(t)))
