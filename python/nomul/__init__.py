"""nomul — Python bindings of libnomul (ctypes, no compiled extension).

  nomul.arith       PAM, PAD, PA exp/log/pow/sqrt/exp2/log2 and derivatives
  nomul.gemm        OpCfg, gemm / gemm_backward, bmm, conv2d
  nomul.functional  softmax, log_softmax, logsumexp, layer_norm, gelu, cross_entropy
  nomul.torch       autograd Functions and nn.Modules (import it explicitly)

libnomul.so is found through NOMUL_LIB, the source tree's build/, or the
system library path (nomul._lib).
"""
from ._lib import NomulError, library_path
from . import arith, functional, gemm
from .gemm import OpCfg

__all__ = ["NomulError", "OpCfg", "arith", "functional", "gemm", "library_path"]
