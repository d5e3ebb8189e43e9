"""nomul.arith — the piecewise affine arithmetic of PAM_SPEC.md on numpy
float32 arrays, elementwise, through libnomul's array kernels (bit-identical
to the scalar C functions on every instruction set).

Arrays must be numpy float32 (other dtypes are refused, not converted);
non-contiguous arrays are copied. Two array operands must have the same
shape; the second operand of mul, div and pow (and the first of div) may
instead be a Python number, broadcast. Results are new arrays unless `out`
(C-contiguous float32 of the result's shape) is given.
"""
import numbers

import numpy as np

from ._lib import call, f32_in, f32_out, ptr

__all__ = ["mul", "div", "log2", "exp2", "exp", "log", "pow", "sqrt",
           "mul_grad", "div_grad", "exp2_grad", "log2_grad", "exp_grad", "log_grad",
           "pow_grad", "sqrt_grad", "LOG2E", "PAM_OFFSET_DEFAULT"]

LOG2E = float(np.float32(1.44269502162933349609375))
PAM_OFFSET_DEFAULT = float(np.float32(1.0552))


def _is_scalar(x):
    return isinstance(x, numbers.Real) and not isinstance(x, np.ndarray)


def _same(a, b, na, nb):
    if a.shape != b.shape:
        raise ValueError("nomul: %s has shape %s but %s has shape %s (only a Python "
                         "number is broadcast)" % (na, a.shape, nb, b.shape))


def _offset(offset):
    """None or 1 means no offset."""
    if offset is None or float(offset) == 1.0:
        return None
    return float(offset)


def mul(a, b, offset=None, out=None):
    """PAM(a, b), or PAM(PAM(a, b), offset) with an offset."""
    a = f32_in(a, "a")
    off = _offset(offset)
    o = f32_out(out, a.shape)
    if _is_scalar(b):
        if off is None:
            call("nomul_pa_mul_vs", a.size, ptr(a), float(b), ptr(o))
        else:
            call("nomul_pa_mul_off_vs", a.size, ptr(a), float(b), off, ptr(o))
        return o
    b = f32_in(b, "b")
    _same(a, b, "a", "b")
    if off is None:
        call("nomul_pa_mul_v", a.size, ptr(a), ptr(b), ptr(o))
    else:
        call("nomul_pa_mul_off_v", a.size, ptr(a), ptr(b), off, ptr(o))
    return o


def div(a, b, out=None):
    """PAD(a, b) ≈ a / b."""
    if _is_scalar(a):
        b = f32_in(b, "b")
        o = f32_out(out, b.shape)
        call("nomul_pa_div_sv", b.size, float(a), ptr(b), ptr(o))
        return o
    a = f32_in(a, "a")
    o = f32_out(out, a.shape)
    if _is_scalar(b):
        call("nomul_pa_div_vs", a.size, ptr(a), float(b), ptr(o))
        return o
    b = f32_in(b, "b")
    _same(a, b, "a", "b")
    call("nomul_pa_div_v", a.size, ptr(a), ptr(b), ptr(o))
    return o


def _unary(fn, x, out):
    x = f32_in(x, "x")
    o = f32_out(out, x.shape)
    call(fn, x.size, ptr(x), ptr(o))
    return o


def log2(x, out=None):
    """palog2(x) = E + M (sign ignored)."""
    return _unary("nomul_pa_log2_v", x, out)


def exp2(y, out=None):
    """paexp2(y) = 2^⌊y⌋ (1 + y − ⌊y⌋)."""
    return _unary("nomul_pa_exp2_v", y, out)


def exp(x, out=None):
    """pa_exp(x) = paexp2(PAM(x, log2e))."""
    return _unary("nomul_pa_exp_v", x, out)


def log(x, out=None):
    """pa_log(x) = PAD(palog2 x, log2e)."""
    return _unary("nomul_pa_log_v", x, out)


def sqrt(a, out=None):
    """pa_sqrt(a) = pa_pow(a, 0.5)."""
    return _unary("nomul_pa_sqrt_v", a, out)


def pow(a, p, out=None):
    """pa_pow(a, p) = paexp2(PAM(palog2 a, p)); p an array or a number."""
    a = f32_in(a, "a")
    o = f32_out(out, a.shape)
    if _is_scalar(p):
        call("nomul_pa_pow_vs", a.size, ptr(a), float(p), ptr(o))
        return o
    p = f32_in(p, "p")
    _same(a, p, "a", "p")
    call("nomul_pa_pow_v", a.size, ptr(a), ptr(p), ptr(o))
    return o


# ---- derivatives: each takes the upstream gradient and returns the input
# gradients; approx=False is the exact (piecewise constant) derivative,
# approx=True the derivative of the exact function in PA arithmetic.

def _grad_operands(a, b, d, names):
    a, b, d = f32_in(a, names[0]), f32_in(b, names[1]), f32_in(d, names[2])
    _same(a, b, names[0], names[1])
    _same(a, d, names[0], names[2])
    return a, b, d


def mul_grad(a, b, dc, approx=False, offset=None):
    """(da, db) of c = PAM(a, b) (PAM(PAM(a, b), offset) with an offset).
    Exact: dc · ∂PAM/∂a, with b replaced by PAM(b, offset) when there is one.
    Approx: PAM(dc, b), PAM(dc, a), each followed by PAM(·, offset) when there
    is one (as nomul_gemm_backward's approximate products do)."""
    a, b, dc = _grad_operands(a, b, dc, ("a", "b", "dc"))
    off = _offset(offset)
    da, db = np.empty_like(a), np.empty_like(b)
    if not approx:
        if off is None:
            call("nomul_pa_mul_grad_v", a.size, ptr(a), ptr(b), ptr(dc), ptr(da), ptr(db))
        else:
            call("nomul_pa_mul_off_grad_v", a.size, ptr(a), ptr(b), off, ptr(dc), ptr(da),
                 ptr(db))
    elif off is None:
        call("nomul_pa_mul_grad_approx_v", a.size, ptr(a), ptr(b), ptr(dc), ptr(da), ptr(db))
    else:
        call("nomul_pa_mul_off_v", a.size, ptr(dc), ptr(b), off, ptr(da))
        call("nomul_pa_mul_off_v", a.size, ptr(dc), ptr(a), off, ptr(db))
    return da, db


def div_grad(a, b, dc, approx=False):
    """(da, db) of c = PAD(a, b)."""
    a, b, dc = _grad_operands(a, b, dc, ("a", "b", "dc"))
    da, db = np.empty_like(a), np.empty_like(b)
    fn = "nomul_pa_div_grad_approx_v" if approx else "nomul_pa_div_grad_v"
    call(fn, a.size, ptr(a), ptr(b), ptr(dc), ptr(da), ptr(db))
    return da, db


def _unary_grad(fn, x, dy, approx=None):
    x, dy = f32_in(x, "x"), f32_in(dy, "dy")
    _same(x, dy, "x", "dy")
    dx = np.empty_like(x)
    if approx is None:
        call(fn, x.size, ptr(x), ptr(dy), ptr(dx))
    else:
        call(fn, x.size, ptr(x), ptr(dy), 1 if approx else 0, ptr(dx))
    return dx


def exp2_grad(y, dy):
    """paexp2'(y) dy = 2^⌊y⌋ dy (exact; paexp2 has no approximate form)."""
    return _unary_grad("nomul_pa_exp2_grad_v", y, dy)


def log2_grad(x, dy):
    """palog2'(x) dy = sign(x) 2^(−E_x) dy."""
    return _unary_grad("nomul_pa_log2_grad_v", x, dy)


def exp_grad(x, dy, approx=False):
    """dx of pa_exp; approx: PAM(pa_exp x, dy)."""
    return _unary_grad("nomul_pa_exp_grad_v", x, dy, approx)


def log_grad(x, dy, approx=False):
    """dx of pa_log; approx: PAD(dy, x)."""
    return _unary_grad("nomul_pa_log_grad_v", x, dy, approx)


def sqrt_grad(a, dy, approx=False):
    """da of pa_sqrt; approx: PAD(dy, PAM(pa_sqrt a, 2))."""
    return _unary_grad("nomul_pa_sqrt_grad_v", a, dy, approx)


def pow_grad(a, p, dy, approx=False):
    """(da, dp) of y = pa_pow(a, p); approx: da = PAM(PAM(p, PAD(y, a)), dy),
    dp = PAM(PAM(y, pa_log a), dy)."""
    a, p, dy = _grad_operands(a, p, dy, ("a", "p", "dy"))
    da, dp = np.empty_like(a), np.empty_like(p)
    call("nomul_pa_pow_grad_v", a.size, ptr(a), ptr(p), ptr(dy), 1 if approx else 0,
         ptr(da), ptr(dp))
    return da, dp
