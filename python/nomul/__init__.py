"""nomul — Python bindings of libnomul (ctypes, no compiled extension).

  nomul.arith       PAM, PAD, PA exp/log/pow/sqrt/exp2/log2 and derivatives
  nomul.gemm        OpCfg, gemm / gemm_backward, bmm, conv2d
  nomul.functional  softmax, log_softmax, logsumexp, layer_norm, batch_norm, gelu,
                    cross_entropy
  nomul.optim       AdamW, SGD, clip_grad_norm, schedule_table (the trainer's)
  nomul.data        ImageSet, Loader: the trainer's image sets and batches
  nomul.safetensors load: nomul checkpoints as numpy arrays
  nomul.torch       autograd Functions and nn.Modules (import it explicitly), with
                    nomul.torch.optim (AdamW, SGD) and nomul.torch.vit (vit.c's ViT)

libnomul.so is found through NOMUL_LIB, the source tree's build/, or the
system library path (nomul._lib).
"""
from ._lib import NomulError, library_path
from . import arith, data, functional, gemm, optim, safetensors
from .gemm import OpCfg

__all__ = ["NomulError", "OpCfg", "arith", "data", "functional", "gemm", "library_path", "optim",
           "safetensors"]
