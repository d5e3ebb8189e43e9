"""nomul.functional — the composites of PAM_SPEC.md (nomul/functional.h) on
numpy float32 arrays: softmax, log_softmax, logsumexp and layer_norm over the
last axis, GELU elementwise, label-smoothed cross-entropy over log-probability
rows. cfg (an OpCfg or a subtype name, default "pam") selects float or the PA
form and its backward. Backward functions return fresh gradients (the C
functions accumulate; here they accumulate into zeros).
"""
import ctypes

import numpy as np

from ._lib import call, check_int, f32_in, ptr
from .gemm import as_cfg

__all__ = ["softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
           "logsumexp", "logsumexp_backward", "layer_norm", "layer_norm_backward",
           "gelu", "gelu_backward", "cross_entropy", "cross_entropy_backward",
           "batch_norm", "batch_norm_backward"]


def _rows(x):
    if x.ndim == 0:
        raise ValueError("nomul: expected at least a 1-D array, got a scalar")
    n = x.shape[-1]
    rows = x.size // n if n else 0
    check_int("rows × n", rows, n)
    return rows, n


def _check(a, shape, name):
    if a.shape != tuple(shape):
        raise ValueError("nomul: %s has shape %s, expected %s" % (name, a.shape, tuple(shape)))


def softmax(x, cfg=None):
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    rows, n = _rows(x)
    y = np.empty_like(x)
    call("nomul_softmax_forward", cfg.ref(), rows, n, ptr(x), ptr(y))
    return y


def softmax_backward(x, y, dy, cfg=None):
    """dx given x, y = softmax(x) and dy."""
    cfg, x, y, dy = as_cfg(cfg), f32_in(x, "x"), f32_in(y, "y"), f32_in(dy, "dy")
    _check(y, x.shape, "y")
    _check(dy, x.shape, "dy")
    rows, n = _rows(x)
    dx = np.zeros_like(x)
    call("nomul_softmax_backward", cfg.ref(), rows, n, ptr(x), ptr(y), ptr(dy), ptr(dx))
    return dx


def log_softmax(x, cfg=None):
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    rows, n = _rows(x)
    y = np.empty_like(x)
    call("nomul_log_softmax_forward", cfg.ref(), rows, n, ptr(x), ptr(y))
    return y


def log_softmax_backward(x, y, dy, cfg=None):
    cfg, x, y, dy = as_cfg(cfg), f32_in(x, "x"), f32_in(y, "y"), f32_in(dy, "dy")
    _check(y, x.shape, "y")
    _check(dy, x.shape, "dy")
    rows, n = _rows(x)
    dx = np.zeros_like(x)
    call("nomul_log_softmax_backward", cfg.ref(), rows, n, ptr(x), ptr(y), ptr(dy), ptr(dx))
    return dx


def logsumexp(x, cfg=None):
    """logsumexp over the last axis: shape x.shape[:-1]."""
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    rows, n = _rows(x)
    lse = np.empty(x.shape[:-1], dtype=np.float32)
    call("nomul_logsumexp_forward", cfg.ref(), rows, n, ptr(x), ptr(lse))
    return lse


def logsumexp_backward(x, dlse, cfg=None):
    cfg, x, dlse = as_cfg(cfg), f32_in(x, "x"), f32_in(dlse, "dlse")
    _check(dlse, x.shape[:-1], "dlse")
    rows, n = _rows(x)
    dx = np.zeros_like(x)
    call("nomul_logsumexp_backward", cfg.ref(), rows, n, ptr(x), ptr(dlse), ptr(dx))
    return dx


def layer_norm(x, gamma, beta, eps=1e-5, cfg=None):
    """(y, mean, rstd) of the layer norm over the last axis; mean and rstd
    (shape x.shape[:-1]) are what layer_norm_backward needs."""
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    gamma, beta = f32_in(gamma, "gamma"), f32_in(beta, "beta")
    rows, n = _rows(x)
    _check(gamma, (n,), "gamma")
    _check(beta, (n,), "beta")
    y = np.empty_like(x)
    mean = np.empty(x.shape[:-1], dtype=np.float32)
    rstd = np.empty(x.shape[:-1], dtype=np.float32)
    call("nomul_layer_norm_forward", cfg.ref(), rows, n, ptr(x), ptr(gamma), ptr(beta),
         float(eps), ptr(y), ptr(mean), ptr(rstd))
    return y, mean, rstd


def layer_norm_backward(x, gamma, mean, rstd, dy, eps=1e-5, cfg=None):
    """(dx, dgamma, dbeta)."""
    cfg, x, gamma = as_cfg(cfg), f32_in(x, "x"), f32_in(gamma, "gamma")
    mean, rstd, dy = f32_in(mean, "mean"), f32_in(rstd, "rstd"), f32_in(dy, "dy")
    rows, n = _rows(x)
    _check(gamma, (n,), "gamma")
    _check(mean, x.shape[:-1], "mean")
    _check(rstd, x.shape[:-1], "rstd")
    _check(dy, x.shape, "dy")
    dx = np.zeros_like(x)
    dgamma = np.zeros_like(gamma)
    dbeta = np.zeros_like(gamma)
    call("nomul_layer_norm_backward", cfg.ref(), rows, n, ptr(x), ptr(gamma), ptr(mean),
         ptr(rstd), float(eps), ptr(dy), ptr(dx), ptr(dgamma), ptr(dbeta))
    return dx, dgamma, dbeta


def _bn_dims(x):
    if x.ndim < 2:
        raise ValueError("nomul: batch_norm needs x (n, C, ...), got shape %s" % (x.shape,))
    n, C = x.shape[0], x.shape[1]
    S = int(np.prod(x.shape[2:], dtype=np.int64))
    check_int("batch_norm", n, C, S, n * S)
    return n, C, S


def _bn_channel(a, C, name):
    a = f32_in(a, name)
    _check(a, (C,), name)
    return a


def batch_norm(x, gamma, beta, running_mean, running_var, training=True, momentum=0.1,
               eps=1e-5, cfg=None):
    """(y, mean, rstd) of batch norm over x (n, C, ...) per channel, as
    nomul_batch_norm_forward: training, the batch's statistics (mean and
    rstd, shape (C,), are what batch_norm_backward needs; in PA mode rstd is
    the divisor pa_sqrt(σ² + eps)) and running_mean / running_var (float32
    (C,), updated in place with momentum, unbiased variance); else the
    running statistics (mean and rstd are then None)."""
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    n, C, S = _bn_dims(x)
    gamma, beta = _bn_channel(gamma, C, "gamma"), _bn_channel(beta, C, "beta")
    for a, name in ((running_mean, "running_mean"), (running_var, "running_var")):
        if (not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != (C,) or
                not a.flags.c_contiguous or not a.flags.writeable):
            raise ValueError("nomul: %s must be a writeable C-contiguous float32 array of "
                             "shape (%d,)" % (name, C))
    y = np.empty_like(x)
    mean = np.zeros(C, dtype=np.float32)
    rstd = np.zeros(C, dtype=np.float32)
    call("nomul_batch_norm_forward", cfg.ref(), n, C, S, ptr(x), ptr(gamma), ptr(beta),
         float(eps), float(momentum), int(bool(training)), ptr(running_mean), ptr(running_var),
         ptr(y), ptr(mean), ptr(rstd))
    return (y, mean, rstd) if training else (y, None, None)


def batch_norm_backward(x, gamma, mean, rstd, dy, eps=1e-5, cfg=None):
    """(dx, dgamma, dbeta) of a training-mode batch_norm (nomul has no
    evaluation-mode backward)."""
    cfg, x, dy = as_cfg(cfg), f32_in(x, "x"), f32_in(dy, "dy")
    n, C, S = _bn_dims(x)
    _check(dy, x.shape, "dy")
    gamma = _bn_channel(gamma, C, "gamma")
    mean, rstd = _bn_channel(mean, C, "mean"), _bn_channel(rstd, C, "rstd")
    dx = np.zeros_like(x)
    dgamma = np.zeros(C, dtype=np.float32)
    dbeta = np.zeros(C, dtype=np.float32)
    call("nomul_batch_norm_backward", cfg.ref(), n, C, S, ptr(x), ptr(gamma), ptr(mean),
         ptr(rstd), float(eps), ptr(dy), ptr(dx), ptr(dgamma), ptr(dbeta))
    return dx, dgamma, dbeta


def gelu(x, cfg=None):
    cfg, x = as_cfg(cfg), f32_in(x, "x")
    y = np.empty_like(x)
    call("nomul_gelu_forward", cfg.ref(), x.size, ptr(x), ptr(y))
    return y


def gelu_backward(x, dy, cfg=None):
    cfg, x, dy = as_cfg(cfg), f32_in(x, "x"), f32_in(dy, "dy")
    _check(dy, x.shape, "dy")
    dx = np.zeros_like(x)
    call("nomul_gelu_backward", cfg.ref(), x.size, ptr(x), ptr(dy), ptr(dx))
    return dx


def _targets(logp, target):
    if logp.ndim != 2:
        raise ValueError("nomul: logp must be 2-D (rows, classes), got shape %s" % (logp.shape,))
    target = np.ascontiguousarray(np.asarray(target))
    if target.dtype.kind not in "iu":
        raise TypeError("nomul: target must hold integers, got dtype %s" % target.dtype)
    if target.shape != (logp.shape[0],):
        raise ValueError("nomul: target has shape %s, expected (%d,)"
                         % (target.shape, logp.shape[0]))
    if target.size and (target.min() < -2**31 or target.max() > 2**31 - 1):
        raise ValueError("nomul: a target does not fit the C API's int")
    return target.astype(np.intc)


def cross_entropy(logp, target, ignore_index=-100, smoothing=0.0, cfg=None):
    """(loss, count): the mean label-smoothed cross-entropy of the rows whose
    target is not ignore_index, over log-probabilities logp (rows, classes)."""
    cfg, logp = as_cfg(cfg), f32_in(logp, "logp")
    t = _targets(logp, target)
    count = ctypes.c_int()
    loss = call("nomul_cross_entropy_forward", cfg.ref(), logp.shape[0], logp.shape[1],
                ptr(logp), ptr(t), int(ignore_index), float(smoothing),
                ctypes.addressof(count))
    if count.value < 0:
        raise ValueError("nomul: a target is outside [0, %d) and not ignore_index"
                         % logp.shape[1])
    return float(np.float32(loss)), count.value


def cross_entropy_backward(logp, target, dloss=1.0, ignore_index=-100, smoothing=0.0,
                           cfg=None):
    """dlogp of cross_entropy given dloss."""
    cfg, logp = as_cfg(cfg), f32_in(logp, "logp")
    t = _targets(logp, target)
    d = np.zeros_like(logp)
    call("nomul_cross_entropy_backward", cfg.ref(), logp.shape[0], logp.shape[1], ptr(logp),
         ptr(t), int(ignore_index), float(smoothing), float(dloss), ptr(d))
    return d
