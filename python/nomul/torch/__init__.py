"""nomul.torch — PyTorch autograd Functions and nn.Modules over libnomul,
named and called like the reference implementation's pam_ops, so a script
written for it runs by changing its import:

    mul, div, exp, log, sqrt, matmul, linear, bmm, conv2d, softmax,
    log_softmax, logsumexp, layer_norm, gelu, cross_entropy
    Linear, Conv2d, LayerNorm, GELU

Every op takes keyword-only approx_bwd (False: the exact piecewise constant
derivative; True: the exact function's derivative in PA arithmetic) and,
where PAM products are made, offset (None: no offset).

Tensors must be float32 on the CPU (anything else raises TypeError, nothing
is converted silently). Non-contiguous tensors are copied to contiguous
memory before the call; results are new contiguous tensors.
"""
import numpy as np
import torch as _torch

from .. import arith as _arith
from .. import functional as _F
from .. import gemm as _gemm
from ..gemm import OpCfg

__all__ = ["mul", "div", "exp", "log", "sqrt", "matmul", "linear", "bmm", "conv2d",
           "softmax", "log_softmax", "logsumexp", "layer_norm", "gelu", "cross_entropy",
           "batch_norm", "Linear", "Conv2d", "LayerNorm", "BatchNorm2d", "GELU", "optim"]


def _np(t, name):
    if not isinstance(t, _torch.Tensor):
        raise TypeError("nomul.torch: %s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise TypeError("nomul.torch: %s is on %s; nomul runs on the CPU only (move it with "
                        ".cpu())" % (name, t.device))
    if t.dtype != _torch.float32:
        raise TypeError("nomul.torch: %s has dtype %s; nomul needs torch.float32 (convert it "
                        "with .float())" % (name, t.dtype))
    return t.detach().contiguous().numpy()


def _t(a):
    return _torch.from_numpy(np.ascontiguousarray(a))


def _cfg(approx_bwd, offset=None, subtype="pam"):
    return OpCfg(subtype, approx_bwd=approx_bwd, offset=offset)


# ---- elementwise ---------------------------------------------------------

class _Mul(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, cfg):
        ctx.save_for_backward(a, b)
        ctx.cfg = cfg
        return _t(_arith.mul(_np(a, "A"), _np(b, "B"), offset=cfg.offset))

    @staticmethod
    def backward(ctx, dc):
        a, b = ctx.saved_tensors
        da, db = _arith.mul_grad(_np(a, "A"), _np(b, "B"), _np(dc, "grad"),
                                 approx=ctx.cfg.approx_bwd, offset=ctx.cfg.offset)
        return _t(da), _t(db), None


class _Div(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, cfg):
        ctx.save_for_backward(a, b)
        ctx.cfg = cfg
        return _t(_arith.div(_np(a, "A"), _np(b, "B")))

    @staticmethod
    def backward(ctx, dc):
        a, b = ctx.saved_tensors
        da, db = _arith.div_grad(_np(a, "A"), _np(b, "B"), _np(dc, "grad"),
                                 approx=ctx.cfg.approx_bwd)
        return _t(da), _t(db), None


def _binary(fn, A, B, cfg):
    A = A if isinstance(A, _torch.Tensor) else _torch.tensor(A, dtype=_torch.float32)
    B = B if isinstance(B, _torch.Tensor) else _torch.tensor(B, dtype=_torch.float32)
    a, b = _torch.broadcast_tensors(A, B)
    out = fn.apply(a, b, cfg)
    return out


def mul(A, B, *, offset=None, approx_bwd=False):
    """PAM(A, B) elementwise (broadcasting as torch.mul)."""
    return _binary(_Mul, A, B, _cfg(approx_bwd, offset))


def div(A, B, *, approx_bwd=False):
    """PAD(A, B) elementwise (broadcasting as torch.div)."""
    return _binary(_Div, A, B, _cfg(approx_bwd))


class _Unary(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, fwd, bwd, approx):
        ctx.save_for_backward(x)
        ctx.bwd, ctx.approx = bwd, approx
        return _t(fwd(_np(x, "input")))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return _t(ctx.bwd(_np(x, "input"), _np(dy, "grad"), approx=ctx.approx)), None, None, None


def exp(x, *, approx_bwd=False):
    """pa_exp(x)."""
    return _Unary.apply(x, _arith.exp, _arith.exp_grad, approx_bwd)


def log(x, *, approx_bwd=False):
    """pa_log(x)."""
    return _Unary.apply(x, _arith.log, _arith.log_grad, approx_bwd)


def sqrt(x, *, approx_bwd=False):
    """pa_sqrt(x)."""
    return _Unary.apply(x, _arith.sqrt, _arith.sqrt_grad, approx_bwd)


# ---- matrix products -------------------------------------------------------

class _Linear(_torch.autograd.Function):
    # x (..., in), weight (out, in), bias (out) or None: y = x · weightᵀ + bias
    @staticmethod
    def forward(ctx, x, weight, bias, cfg):
        ctx.save_for_backward(x, weight)
        ctx.cfg, ctx.has_bias = cfg, bias is not None
        x2 = _np(x, "input").reshape(-1, x.shape[-1])
        y = _gemm.gemm(x2, _np(weight, "weight"), cfg, trans_b=True)
        if bias is not None:
            y += _np(bias, "bias")
        return _t(y.reshape(*x.shape[:-1], weight.shape[0]))

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        x2 = _np(x, "input").reshape(-1, x.shape[-1])
        dy2 = _np(dy, "grad").reshape(-1, weight.shape[0])
        dx, dw = _gemm.gemm_backward(x2, _np(weight, "weight"), dy2, ctx.cfg, trans_b=True,
                                     need_a=ctx.needs_input_grad[0],
                                     need_b=ctx.needs_input_grad[1])
        db = _t(dy2.sum(axis=0, dtype=np.float32)) if ctx.has_bias else None
        return (None if dx is None else _t(dx.reshape(x.shape)),
                None if dw is None else _t(dw), db, None)


def linear(input, weight, bias=None, *, approx_bwd=False, offset=None):
    """input · weightᵀ + bias with PAM products (as torch.nn.functional.linear)."""
    return _Linear.apply(input, weight, bias, _cfg(approx_bwd, offset))


class _Bmm(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, cfg):
        ctx.save_for_backward(a, b)
        ctx.cfg = cfg
        return _t(_gemm.bmm(_np(a, "A"), _np(b, "B"), cfg))

    @staticmethod
    def backward(ctx, dc):
        a, b = ctx.saved_tensors
        da, db = _gemm.bmm_backward(_np(a, "A"), _np(b, "B"), _np(dc, "grad"), ctx.cfg,
                                    need_a=ctx.needs_input_grad[0],
                                    need_b=ctx.needs_input_grad[1])
        return (None if da is None else _t(da)), (None if db is None else _t(db)), None


def bmm(A, B, *, offset=None, approx_bwd=False):
    """Batched A[i] · B[i] with PAM products, A (b, m, k), B (b, k, n)."""
    return _Bmm.apply(A, B, _cfg(approx_bwd, offset))


def matmul(A, B, *, offset=None, approx_bwd=False):
    """A · B for 2-D A and B, or batched over matching leading dimensions."""
    if A.dim() == 2 and B.dim() == 2:
        return _Linear.apply(A, B.t(), None, _cfg(approx_bwd, offset))
    if A.dim() != B.dim() or A.dim() < 3 or A.shape[:-2] != B.shape[:-2]:
        raise ValueError("nomul.torch.matmul: shapes %s and %s: need 2-D operands or equal "
                         "leading (batch) dimensions" % (tuple(A.shape), tuple(B.shape)))
    lead = A.shape[:-2]
    c = bmm(A.reshape(-1, *A.shape[-2:]), B.reshape(-1, *B.shape[-2:]), offset=offset,
            approx_bwd=approx_bwd)
    return c.reshape(*lead, *c.shape[-2:])


class _Conv2d(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, cfg, geom):
        ctx.save_for_backward(x, weight)
        ctx.cfg, ctx.geom, ctx.has_bias = cfg, geom, bias is not None
        return _t(_gemm.conv2d(_np(x, "input"), _np(weight, "weight"),
                               None if bias is None else _np(bias, "bias"), cfg, *geom))

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx, dw, db = _gemm.conv2d_backward(_np(x, "input"), _np(weight, "weight"),
                                           _np(dy, "grad"), ctx.cfg, *ctx.geom,
                                           need_x=ctx.needs_input_grad[0],
                                           need_weight=ctx.needs_input_grad[1],
                                           need_bias=ctx.has_bias)
        return (None if dx is None else _t(dx), None if dw is None else _t(dw),
                None if db is None else _t(db), None, None)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           approx_bwd=False, offset=None):
    """As torch.nn.functional.conv2d (NCHW), every product a PAM."""
    return _Conv2d.apply(input, weight, bias, _cfg(approx_bwd, offset),
                         (stride, padding, dilation, groups))


# ---- composites over one dimension ------------------------------------------

def _to_last(x, dim):
    dim = dim % x.dim()
    return x if dim == x.dim() - 1 else x.transpose(dim, -1), dim


def _from_last(y, x, dim):
    return y if dim == x.dim() - 1 else y.transpose(dim, -1)


class _RowOp(_torch.autograd.Function):
    # kind: softmax / log_softmax over the last dimension
    @staticmethod
    def forward(ctx, x, kind, cfg):
        fwd = _F.softmax if kind == "softmax" else _F.log_softmax
        y = _t(fwd(_np(x, "input"), cfg))
        ctx.save_for_backward(x, y)
        ctx.kind, ctx.cfg = kind, cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        x, y = ctx.saved_tensors
        bwd = _F.softmax_backward if ctx.kind == "softmax" else _F.log_softmax_backward
        return _t(bwd(_np(x, "input"), _np(y, "output"), _np(dy, "grad"), ctx.cfg)), None, None


def softmax(x, dim=-1, *, approx_bwd=False, offset=None):
    """PA softmax along dim."""
    xl, d = _to_last(x, dim)
    return _from_last(_RowOp.apply(xl, "softmax", _cfg(approx_bwd, offset)), x, d)


def log_softmax(x, dim=-1, *, approx_bwd=False, offset=None):
    """PA log_softmax along dim."""
    xl, d = _to_last(x, dim)
    return _from_last(_RowOp.apply(xl, "log_softmax", _cfg(approx_bwd, offset)), x, d)


class _Logsumexp(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cfg):
        ctx.save_for_backward(x)
        ctx.cfg = cfg
        return _t(_F.logsumexp(_np(x, "input"), cfg))

    @staticmethod
    def backward(ctx, dl):
        (x,) = ctx.saved_tensors
        return _t(_F.logsumexp_backward(_np(x, "input"), _np(dl, "grad"), ctx.cfg)), None


def logsumexp(x, dim=-1, keepdim=False, *, approx_bwd=False, offset=None):
    """PA logsumexp along dim."""
    d = dim % x.dim()
    out = _Logsumexp.apply(_torch.movedim(x, d, -1), _cfg(approx_bwd, offset))
    return out.unsqueeze(d) if keepdim else out


class _LayerNorm(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, cfg):
        y, mean, rstd = _F.layer_norm(_np(x, "input"), _np(weight, "weight"),
                                      _np(bias, "bias"), eps, cfg)
        ctx.save_for_backward(x, weight, _t(mean), _t(rstd))
        ctx.eps, ctx.cfg = eps, cfg
        return _t(y)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dg, db = _F.layer_norm_backward(_np(x, "input"), _np(weight, "weight"),
                                            mean.numpy(), rstd.numpy(), _np(dy, "grad"),
                                            ctx.eps, ctx.cfg)
        return _t(dx), _t(dg), _t(db), None, None


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, *,
               approx_bwd=False, offset=None):
    """PA layer norm over the last dimension (normalized_shape must be it)."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(ns) != 1 or ns[0] != input.shape[-1]:
        raise ValueError("nomul.torch.layer_norm: normalizes the last dimension only; "
                         "normalized_shape %s does not match input %s"
                         % (ns, tuple(input.shape)))
    n = ns[0]
    if weight is None:
        weight = _torch.ones(n)
    if bias is None:
        bias = _torch.zeros(n)
    return _LayerNorm.apply(input, weight, bias, float(eps), _cfg(approx_bwd, offset))


class _Gelu(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cfg):
        ctx.save_for_backward(x)
        ctx.cfg = cfg
        return _t(_F.gelu(_np(x, "input"), cfg))

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return _t(_F.gelu_backward(_np(x, "input"), _np(dy, "grad"), ctx.cfg)), None


def gelu(x, *, approx_bwd=False, offset=None):
    """nomul's PA GELU, x σ(1.702 x) (PAM_SPEC.md gives no GELU recipe)."""
    return _Gelu.apply(x, _cfg(approx_bwd, offset))


class _CrossEntropy(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, target, ignore_index, smoothing, cfg):
        t = target.detach().cpu().numpy()
        loss, _count = _F.cross_entropy(_np(logp, "input"), t, ignore_index, smoothing, cfg)
        ctx.save_for_backward(logp)
        ctx.t, ctx.args = t, (ignore_index, smoothing, cfg)
        return _torch.tensor(loss, dtype=_torch.float32)

    @staticmethod
    def backward(ctx, dloss):
        (logp,) = ctx.saved_tensors
        ignore_index, smoothing, cfg = ctx.args
        d = _F.cross_entropy_backward(_np(logp, "input"), ctx.t, float(dloss), ignore_index,
                                      smoothing, cfg)
        return _t(d), None, None, None, None


def cross_entropy(input, target, ignore_index=-100, label_smoothing=0.0, *,
                  approx_bwd=False, offset=None):
    """Mean label-smoothed cross-entropy of logits input (rows, classes) and
    integer targets: PA log_softmax, then the PA loss."""
    if input.dim() != 2:
        raise ValueError("nomul.torch.cross_entropy: input must be (rows, classes), got %s"
                         % (tuple(input.shape),))
    cfg = _cfg(approx_bwd, offset)
    logp = _RowOp.apply(input, "log_softmax", cfg)
    return _CrossEntropy.apply(logp, target, int(ignore_index), float(label_smoothing), cfg)


class _BatchNorm(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, cfg):
        y, mean, rstd = _F.batch_norm(_np(x, "input"), _np(weight, "weight"), _np(bias, "bias"),
                                      running_mean, running_var, True, momentum, eps, cfg)
        ctx.save_for_backward(x, weight, _t(mean), _t(rstd))
        ctx.eps, ctx.cfg = eps, cfg
        return _t(y)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dg, db = _F.batch_norm_backward(_np(x, "input"), _np(weight, "weight"),
                                            mean.numpy(), rstd.numpy(), _np(dy, "grad"),
                                            ctx.eps, ctx.cfg)
        return _t(dx), _t(dg), _t(db), None, None, None, None, None


def _stat(t, name, c):
    if t is None:
        return np.zeros(c, dtype=np.float32) if name == "running_mean" else \
            np.ones(c, dtype=np.float32)
    if not isinstance(t, _torch.Tensor) or t.dtype != _torch.float32 or t.device.type != "cpu" \
            or not t.is_contiguous() or tuple(t.shape) != (c,):
        raise TypeError("nomul.torch.batch_norm: %s must be a contiguous float32 CPU tensor of "
                        "shape (%d,)" % (name, c))
    return t.detach().numpy()  # updated in place, as torch updates its buffers


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, *, approx_bwd=False, offset=None):
    """PA batch norm over input (n, C, ...) per channel, as
    torch.nn.functional.batch_norm: training, the batch's statistics (the
    running ones, when given, updated in place with momentum); else the
    running ones, without a backward (nomul has none for evaluation mode)."""
    if input.dim() < 2:
        raise ValueError("nomul.torch.batch_norm: input must be (n, C, ...), got %s"
                         % (tuple(input.shape),))
    c = input.shape[1]
    weight = _torch.ones(c) if weight is None else weight
    bias = _torch.zeros(c) if bias is None else bias
    if momentum is None:
        raise ValueError("nomul.torch.batch_norm: momentum None (a cumulative average) is not "
                         "supported; give a number")
    cfg = _cfg(approx_bwd, offset)
    if training:
        rm, rv = _stat(running_mean, "running_mean", c), _stat(running_var, "running_var", c)
        return _BatchNorm.apply(input, weight, bias, rm, rv, float(momentum), float(eps), cfg)
    if running_mean is None or running_var is None:
        raise ValueError("nomul.torch.batch_norm: evaluation mode needs the running statistics")
    if _torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad or
                                     bias.requires_grad):
        raise RuntimeError("nomul.torch.batch_norm: nomul has no evaluation-mode backward; "
                           "evaluate under torch.no_grad(), or train in training mode")
    rm, rv = _stat(running_mean, "running_mean", c), _stat(running_var, "running_var", c)
    y, _, _ = _F.batch_norm(_np(input, "input"), _np(weight, "weight"), _np(bias, "bias"),
                            rm, rv, False, float(momentum), float(eps), cfg)
    return _t(y)


# ---- modules ---------------------------------------------------------------

class Linear(_torch.nn.Linear):
    """torch.nn.Linear (same parameters and initialisation) with PAM products."""

    def __init__(self, in_features, out_features, bias=True, approx_bwd=False, offset=None,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.approx_bwd, self.offset = approx_bwd, offset

    def forward(self, input):
        return linear(input, self.weight, self.bias, approx_bwd=self.approx_bwd,
                      offset=self.offset)


class Conv2d(_torch.nn.Conv2d):
    """torch.nn.Conv2d (zero padding only) with PAM products."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", approx_bwd=False,
                 offset=None, device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError("nomul.torch.Conv2d: padding_mode must be 'zeros'")
        if isinstance(padding, str):
            raise ValueError("nomul.torch.Conv2d: padding must be numbers, not %r" % padding)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device=device, dtype=dtype)
        self.approx_bwd, self.offset = approx_bwd, offset

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, approx_bwd=self.approx_bwd, offset=self.offset)


class LayerNorm(_torch.nn.LayerNorm):
    """torch.nn.LayerNorm over the last dimension, in PA arithmetic."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, approx_bwd=False,
                 offset=None, device=None, dtype=None):
        super().__init__(normalized_shape, eps, elementwise_affine, device=device, dtype=dtype)
        if len(self.normalized_shape) != 1:
            raise ValueError("nomul.torch.LayerNorm: normalizes one (the last) dimension only")
        self.approx_bwd, self.offset = approx_bwd, offset

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps,
                          approx_bwd=self.approx_bwd, offset=self.offset)


class BatchNorm2d(_torch.nn.BatchNorm2d):
    """torch.nn.BatchNorm2d (same parameters, buffers and initialisation) in
    PA arithmetic; momentum must be a number (no cumulative average), and
    evaluation mode has no backward (see batch_norm)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, approx_bwd=False, offset=None, device=None,
                 dtype=None):
        if momentum is None:
            raise ValueError("nomul.torch.BatchNorm2d: momentum must be a number")
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.approx_bwd, self.offset = approx_bwd, offset

    def forward(self, input):
        if input.dim() != 4:
            raise ValueError("nomul.torch.BatchNorm2d: expected (n, C, H, W), got %s"
                             % (tuple(input.shape),))
        training = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return batch_norm(input, self.running_mean if self.track_running_stats else None,
                          self.running_var if self.track_running_stats else None,
                          self.weight, self.bias, training, self.momentum, self.eps,
                          approx_bwd=self.approx_bwd, offset=self.offset)


class GELU(_torch.nn.Module):
    def __init__(self, approx_bwd=False, offset=None):
        super().__init__()
        self.approx_bwd, self.offset = approx_bwd, offset

    def forward(self, input):
        return gelu(input, approx_bwd=self.approx_bwd, offset=self.offset)


from . import optim  # noqa: E402  (nomul.torch.optim: AdamW, SGD, clip_grad_norm_)
