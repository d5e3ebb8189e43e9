"""nomul._lib — loads libnomul.so with ctypes, declares the C signatures used
by the package, and turns the library's error channel (nomul/error.h) into
Python exceptions.

Where the library is found, first match wins:
  1. the NOMUL_LIB environment variable (a path to libnomul.so*);
  2. build/libnomul.so of the source tree this package sits in (python/../build);
  3. libnomul.so.0 / libnomul.so on the system search path (make install).
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["lib", "NomulError", "call", "check_int", "f32_check", "f32_in", "f32_out", "ptr", "library_path",
           "ROW_MAJOR", "NO_TRANS", "TRANS"]

# OpenBLAS cblas.h enumerations used by nomul/gemm.h
ROW_MAJOR = 101
NO_TRANS = 111
TRANS = 112


class NomulError(RuntimeError):
    """A libnomul call refused its arguments; the message is the library's."""


def _candidates():
    env = os.environ.get("NOMUL_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, "..", "..", "build", "libnomul.so")
    names = [tree, "libnomul.so.0", "libnomul.so"]
    found = ctypes.util.find_library("nomul")
    if found:
        names.append(found)
    return names


def _load():
    errors = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            errors.append("%s: %s" % (name, e))
    raise ImportError("nomul: cannot load libnomul.so (set NOMUL_LIB to its path, or run "
                      "`make` / `make install`); tried:\n  " + "\n  ".join(errors))


lib, library_path = _load()

F = ctypes.c_float
I = ctypes.c_int
L = ctypes.c_long
Z = ctypes.c_size_t
P = ctypes.c_void_p

_SIGS = {
    "nomul_last_error": (I, []),
    "nomul_last_error_message": (ctypes.c_char_p, []),
    "nomul_clear_error": (None, []),
    "nomul_set_error_handler": (None, [P]),
    "nomul_pa_mul": (F, [F, F]),
    "nomul_pa_mul_off": (F, [F, F, F]),
    "nomul_pa_div": (F, [F, F]),
    "nomul_pa_mul_v": (None, [Z, P, P, P]),
    "nomul_pa_mul_vs": (None, [Z, P, F, P]),
    "nomul_pa_mul_off_v": (None, [Z, P, P, F, P]),
    "nomul_pa_mul_off_vs": (None, [Z, P, F, F, P]),
    "nomul_pa_div_v": (None, [Z, P, P, P]),
    "nomul_pa_div_vs": (None, [Z, P, F, P]),
    "nomul_pa_div_sv": (None, [Z, F, P, P]),
    "nomul_pa_log2_v": (None, [Z, P, P]),
    "nomul_pa_exp2_v": (None, [Z, P, P]),
    "nomul_pa_exp_v": (None, [Z, P, P]),
    "nomul_pa_log_v": (None, [Z, P, P]),
    "nomul_pa_pow_v": (None, [Z, P, P, P]),
    "nomul_pa_pow_vs": (None, [Z, P, F, P]),
    "nomul_pa_sqrt_v": (None, [Z, P, P]),
    "nomul_pa_mul_grad_v": (None, [Z, P, P, P, P, P]),
    "nomul_pa_mul_off_grad_v": (None, [Z, P, P, F, P, P, P]),
    "nomul_pa_mul_grad_approx_v": (None, [Z, P, P, P, P, P]),
    "nomul_pa_div_grad_v": (None, [Z, P, P, P, P, P]),
    "nomul_pa_div_grad_approx_v": (None, [Z, P, P, P, P, P]),
    "nomul_pa_exp2_grad_v": (None, [Z, P, P, P]),
    "nomul_pa_log2_grad_v": (None, [Z, P, P, P]),
    "nomul_pa_exp_grad_v": (None, [Z, P, P, I, P]),
    "nomul_pa_log_grad_v": (None, [Z, P, P, I, P]),
    "nomul_pa_pow_grad_v": (None, [Z, P, P, P, I, P, P]),
    "nomul_pa_sqrt_grad_v": (None, [Z, P, P, I, P]),
    "nomul_gemm": (None, [P, I, I, I, I, I, I, P, I, P, I, F, P, I]),
    "nomul_gemm_backward": (None, [P, I, I, I, I, I, I, P, I, P, I, P, I, F, P, I, P, I]),
    "nomul_gemm_batched": (None, [P, I, I, I, I, I, I, P, I, L, P, I, L, F, P, I, L, I]),
    "nomul_gemm_backward_batched": (None, [P, I, I, I, I, I, I, P, I, L, P, I, L, P, I, L,
                                           F, P, I, L, P, I, L, I]),
    "nomul_conv2d_output_size": (I, [P, P, P]),
    "nomul_conv2d_forward": (None, [P, P, P, P, P, P]),
    "nomul_conv2d_backward_data": (None, [P, P, P, P, P, P]),
    "nomul_conv2d_backward_weight": (None, [P, P, P, P, P, P, P]),
    "nomul_softmax_forward": (None, [P, I, I, P, P]),
    "nomul_softmax_backward": (None, [P, I, I, P, P, P, P]),
    "nomul_log_softmax_forward": (None, [P, I, I, P, P]),
    "nomul_log_softmax_backward": (None, [P, I, I, P, P, P, P]),
    "nomul_logsumexp_forward": (None, [P, I, I, P, P]),
    "nomul_logsumexp_backward": (None, [P, I, I, P, P, P]),
    "nomul_layer_norm_forward": (None, [P, I, I, P, P, P, F, P, P, P]),
    "nomul_layer_norm_backward": (None, [P, I, I, P, P, P, P, F, P, P, P, P]),
    "nomul_cross_entropy_forward": (F, [P, I, I, P, P, I, F, P]),
    "nomul_cross_entropy_backward": (None, [P, I, I, P, P, I, F, F, P]),
    "nomul_gelu_forward": (None, [P, L, P, P]),
    "nomul_gelu_backward": (None, [P, L, P, P, P]),
    "nomul_batch_norm_forward": (None, [P, I, I, I, P, P, P, F, F, I, P, P, P, P, P]),
    "nomul_batch_norm_backward": (None, [P, I, I, I, P, P, P, P, F, P, P, P, P]),
    "nomul_adamw_init": (None, [P, F, F, P]),
    "nomul_adamw_begin_step": (None, [P]),
    "nomul_adamw_update": (None, [P, Z, P, P, P, P]),
    "nomul_sgd_init": (None, [P, F, F, F, P]),
    "nomul_sgd_update": (None, [P, Z, P, P, P]),
    "nomul_clip_grad_norm": (F, [Z, P, P, F, P]),
    "nomul_schedule_lr": (F, [P, L]),
    "nomul_schedule_table": (I, [P, P]),
    "nomul_image_set_from_idx": (P, [ctypes.c_char_p, ctypes.c_char_p, I]),
    "nomul_image_set_free": (None, [P]),
    "nomul_loader_new": (P, [P, I, I, I, P, ctypes.c_uint64]),
    "nomul_loader_start": (None, [P, L, L]),
    "nomul_loader_next": (I, [P, P, P]),
    "nomul_loader_batches": (L, [P]),
    "nomul_loader_free": (None, [P]),
}

for _name, (_res, _args) in _SIGS.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args

# The default handler prints every error on stderr; Python reports it as an
# exception instead (the message is read back with nomul_last_error_message).
_HANDLER_T = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p)
_quiet_handler = _HANDLER_T(lambda status, message: None)
lib.nomul_set_error_handler(ctypes.cast(_quiet_handler, P))


def call(name, *args):
    """Calls lib.<name>(*args); raises NomulError when the library reports one."""
    lib.nomul_clear_error()
    result = getattr(lib, name)(*args)
    if lib.nomul_last_error() != 0:
        msg = lib.nomul_last_error_message().decode("utf-8", "replace")
        lib.nomul_clear_error()
        raise NomulError("%s: %s" % (name, msg))
    return result


INT_MAX = 2**31 - 1


def check_int(what, *values):
    """The C entry points take int sizes: refuse what would not fit."""
    for v in values:
        if v > INT_MAX:
            raise ValueError("nomul: %s: a size of %d does not fit the C API's int" % (what, v))


def ptr(a):
    """The data pointer of a C-contiguous array (None for None)."""
    return None if a is None else a.ctypes.data


def f32_check(x, name):
    """x itself, once it is known to be a float32 numpy array (anything else
    is refused: no silent precision change)."""
    if not isinstance(x, np.ndarray):
        raise TypeError("nomul: %s must be a numpy.ndarray of float32, got %s"
                        % (name, type(x).__name__))
    if x.dtype != np.float32:
        raise TypeError("nomul: %s must have dtype float32, got %s (convert it with "
                        ".astype(numpy.float32))" % (name, x.dtype))
    return x


def f32_in(x, name):
    """x as a C-contiguous float32 numpy array; a non-contiguous one is copied."""
    return np.ascontiguousarray(f32_check(x, name))


def f32_out(out, shape, name="out"):
    """A fresh float32 array of shape, or out checked to be one (C-contiguous,
    float32, writeable, that shape)."""
    shape = tuple(shape)
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise TypeError("nomul: %s must be a float32 numpy.ndarray" % name)
    if out.shape != shape:
        raise ValueError("nomul: %s has shape %s, expected %s" % (name, out.shape, shape))
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("nomul: %s must be C-contiguous and writeable" % name)
    return out
