"""nomul.gemm — matrix products and 2-D convolution as an operation
configuration says (nomul/opcfg.h, nomul/gemm.h, nomul/conv.h), on numpy
float32 arrays, row-major.

OpCfg mirrors nomul_op_cfg: subtype "pam" (piecewise affine, every product a
PAM, the default here) or "standard" (float through OpenBLAS); approx_bwd
(the derivative of the exact function in PA arithmetic instead of the exact
piecewise constant one); offset (PAM's offset, 1 or None for none).
"""
import ctypes

import numpy as np

from ._lib import NO_TRANS, ROW_MAJOR, TRANS, call, check_int, f32_check, f32_in, f32_out, ptr

__all__ = ["OpCfg", "as_cfg", "gemm", "gemm_backward", "bmm", "bmm_backward",
           "conv2d", "conv2d_backward"]

_SUBTYPES = {"standard": 0, "pam": 1, "pam_ln": 1}


class _CCfg(ctypes.Structure):
    _fields_ = [("subtype", ctypes.c_int), ("approx_bwd", ctypes.c_int),
                ("offset", ctypes.c_float)]


class OpCfg:
    """How an operation family computes: OpCfg("pam", approx_bwd=True, offset=1.0552)."""

    def __init__(self, subtype="pam", approx_bwd=False, offset=None):
        if subtype not in _SUBTYPES:
            raise ValueError("nomul: subtype must be one of %s, got %r"
                             % (", ".join(sorted(_SUBTYPES)), subtype))
        self.subtype = "pam" if subtype == "pam_ln" else subtype
        self.approx_bwd = bool(approx_bwd)
        self.offset = 1.0 if offset is None else float(offset)
        self._c = _CCfg(_SUBTYPES[self.subtype], int(self.approx_bwd), self.offset)

    @property
    def is_pa(self):
        return self.subtype != "standard"

    def ref(self):
        """A pointer to the C struct, valid while this object lives."""
        return ctypes.addressof(self._c)

    def __repr__(self):
        return "OpCfg(%r, approx_bwd=%r, offset=%r)" % (self.subtype, self.approx_bwd,
                                                        self.offset)


def as_cfg(cfg):
    """OpCfg from an OpCfg, a subtype name or None (the default "pam")."""
    if cfg is None:
        return OpCfg()
    if isinstance(cfg, OpCfg):
        return cfg
    if isinstance(cfg, str):
        return OpCfg(cfg)
    raise TypeError("nomul: cfg must be an OpCfg or a subtype name, got %r" % (cfg,))


def _dims(a, b, trans_a, trans_b, ndim):
    if a.ndim != ndim or b.ndim != ndim:
        raise ValueError("nomul: expected %d-D operands, got shapes %s and %s"
                         % (ndim, a.shape, b.shape))
    m, ka = (a.shape[-1], a.shape[-2]) if trans_a else (a.shape[-2], a.shape[-1])
    kb, n = (b.shape[-1], b.shape[-2]) if trans_b else (b.shape[-2], b.shape[-1])
    if ka != kb:
        raise ValueError("nomul: inner dimensions differ: op(a) is %dx%d, op(b) is %dx%d"
                         % (m, ka, kb, n))
    check_int("matrix product", m, n, ka, *a.shape, *b.shape)
    return m, n, ka


def _t(flag):
    return TRANS if flag else NO_TRANS


def gemm(a, b, cfg=None, trans_a=False, trans_b=False, out=None, accumulate=False):
    """c (m×n) = op(a) · op(b), every product a PAM when cfg is piecewise
    affine; with accumulate, out += op(a) · op(b) (out required)."""
    cfg = as_cfg(cfg)
    m, n, k = _dims(f32_check(a, "a"), f32_check(b, "b"), trans_a, trans_b, 2)
    a, b = f32_in(a, "a"), f32_in(b, "b")
    if accumulate and out is None:
        raise ValueError("nomul: accumulate needs out")
    c = f32_out(out, (m, n))
    call("nomul_gemm", cfg.ref(), ROW_MAJOR, _t(trans_a), _t(trans_b), m, n, k,
         ptr(a), max(a.shape[1], 1), ptr(b), max(b.shape[1], 1),
         1.0 if accumulate else 0.0, ptr(c), max(n, 1))
    return c


def gemm_backward(a, b, dc, cfg=None, trans_a=False, trans_b=False, need_a=True, need_b=True):
    """(da, db), the gradients of c = gemm(a, b, cfg, trans_a, trans_b) given
    dc, shaped like a and b (None where not needed)."""
    cfg = as_cfg(cfg)
    m, n, k = _dims(f32_check(a, "a"), f32_check(b, "b"), trans_a, trans_b, 2)
    a, b, dc = f32_in(a, "a"), f32_in(b, "b"), f32_in(dc, "dc")
    if dc.shape != (m, n):
        raise ValueError("nomul: dc has shape %s, expected %s" % (dc.shape, (m, n)))
    da = np.empty_like(a) if need_a else None
    db = np.empty_like(b) if need_b else None
    call("nomul_gemm_backward", cfg.ref(), ROW_MAJOR, _t(trans_a), _t(trans_b), m, n, k,
         ptr(a), max(a.shape[1], 1), ptr(b), max(b.shape[1], 1), ptr(dc), max(n, 1), 0.0,
         ptr(da), max(a.shape[1], 1), ptr(db), max(b.shape[1], 1))
    return da, db


def bmm(a, b, cfg=None, trans_a=False, trans_b=False):
    """c[i] = op(a[i]) · op(b[i]) for 3-D a (batch, ., .) and b (batch, ., .)."""
    cfg = as_cfg(cfg)
    m, n, k = _dims(f32_check(a, "a"), f32_check(b, "b"), trans_a, trans_b, 3)
    a, b = f32_in(a, "a"), f32_in(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError("nomul: batch sizes differ: %d and %d" % (a.shape[0], b.shape[0]))
    nb = a.shape[0]
    c = np.empty((nb, m, n), dtype=np.float32)
    call("nomul_gemm_batched", cfg.ref(), ROW_MAJOR, _t(trans_a), _t(trans_b), m, n, k,
         ptr(a), max(a.shape[2], 1), a.shape[1] * a.shape[2], ptr(b), max(b.shape[2], 1),
         b.shape[1] * b.shape[2], 0.0, ptr(c), max(n, 1), m * n, nb)
    return c


def bmm_backward(a, b, dc, cfg=None, trans_a=False, trans_b=False, need_a=True, need_b=True):
    """(da, db) of c = bmm(a, b, cfg, trans_a, trans_b) given dc."""
    cfg = as_cfg(cfg)
    m, n, k = _dims(f32_check(a, "a"), f32_check(b, "b"), trans_a, trans_b, 3)
    a, b, dc = f32_in(a, "a"), f32_in(b, "b"), f32_in(dc, "dc")
    nb = a.shape[0]
    if b.shape[0] != nb or dc.shape != (nb, m, n):
        raise ValueError("nomul: shapes %s, %s and dc %s do not match"
                         % (a.shape, b.shape, dc.shape))
    da = np.empty_like(a) if need_a else None
    db = np.empty_like(b) if need_b else None
    sa, sb = a.shape[1] * a.shape[2], b.shape[1] * b.shape[2]
    call("nomul_gemm_backward_batched", cfg.ref(), ROW_MAJOR, _t(trans_a), _t(trans_b),
         m, n, k, ptr(a), max(a.shape[2], 1), sa, ptr(b), max(b.shape[2], 1), sb,
         ptr(dc), max(n, 1), m * n, 0.0, ptr(da), max(a.shape[2], 1), sa,
         ptr(db), max(b.shape[2], 1), sb, nb)
    return da, db


class _ConvDesc(ctypes.Structure):
    _fields_ = [(f, ctypes.c_int) for f in
                ("n", "c_in", "h", "w", "c_out", "kh", "kw", "stride_h", "stride_w",
                 "pad_h", "pad_w", "dil_h", "dil_w", "groups")]


def _pair(v, name):
    if isinstance(v, int):
        return v, v
    v = tuple(v)
    if len(v) != 2:
        raise ValueError("nomul: %s must be an int or a pair, got %r" % (name, v))
    return int(v[0]), int(v[1])


def _conv_desc(x, w, stride, padding, dilation, groups):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("nomul: conv2d needs x (n, c_in, h, w) and weight (c_out, "
                         "c_in/groups, kh, kw), got shapes %s and %s" % (x.shape, w.shape))
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if w.shape[1] * groups != x.shape[1]:
        raise ValueError("nomul: weight has %d input channels per group, x has %d channels "
                         "in %d groups" % (w.shape[1], x.shape[1], groups))
    check_int("conv2d", *x.shape, *w.shape, int(np.prod(x.shape[1:])), w.size)
    d = _ConvDesc(x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2],
                  w.shape[3], sh, sw, ph, pw, dh, dw, groups)
    oh, ow = ctypes.c_int(), ctypes.c_int()
    call("nomul_conv2d_output_size", ctypes.addressof(d), ctypes.addressof(oh),
         ctypes.addressof(ow))
    return d, (x.shape[0], w.shape[0], oh.value, ow.value)


def conv2d(x, weight, bias=None, cfg=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, weight) + bias (NCHW, cross-correlation, as torch)."""
    cfg = as_cfg(cfg)
    x, weight = f32_in(x, "x"), f32_in(weight, "weight")
    if bias is not None:
        bias = f32_in(bias, "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError("nomul: bias has shape %s, expected (%d,)"
                             % (bias.shape, weight.shape[0]))
    d, yshape = _conv_desc(x, weight, stride, padding, dilation, groups)
    y = np.empty(yshape, dtype=np.float32)
    call("nomul_conv2d_forward", ctypes.addressof(d), cfg.ref(), ptr(x), ptr(weight),
         ptr(bias), ptr(y))
    return y


def conv2d_backward(x, weight, dy, cfg=None, stride=1, padding=0, dilation=1, groups=1,
                    need_x=True, need_weight=True, need_bias=True):
    """(dx, dweight, dbias) of y = conv2d(x, weight, bias, ...) given dy."""
    cfg = as_cfg(cfg)
    x, weight, dy = f32_in(x, "x"), f32_in(weight, "weight"), f32_in(dy, "dy")
    d, yshape = _conv_desc(x, weight, stride, padding, dilation, groups)
    if dy.shape != yshape:
        raise ValueError("nomul: dy has shape %s, expected %s" % (dy.shape, yshape))
    dx = dw = dbias = None
    if need_x:
        dx = np.empty_like(x)
        call("nomul_conv2d_backward_data", ctypes.addressof(d), cfg.ref(), ptr(x),
             ptr(weight), ptr(dy), ptr(dx))
    if need_weight or need_bias:
        dw = np.empty_like(weight)
        dbias = np.empty(weight.shape[0], dtype=np.float32) if need_bias else None
        call("nomul_conv2d_backward_weight", ctypes.addressof(d), cfg.ref(), ptr(x),
             ptr(weight), ptr(dy), ptr(dw), ptr(dbias))
        if not need_weight:
            dw = None
    return dx, dw, dbias
