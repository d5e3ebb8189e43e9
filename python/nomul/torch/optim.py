"""nomul.torch.optim — torch.optim optimizers whose step is nomul's C update
(nomul.optim): AdamW and SGD, float or piecewise affine (cfg, the trainer's
opt_functional_cfg), with param groups and state_dict as torch's.

    opt = nomul.torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.999),
                                  weight_decay=0.05, cfg="pam")

Parameters must be float32 CPU tensors; their gradients are read as they
are (call clip_grad_norm_ first to clip). Each parameter's state holds
exp_avg and exp_avg_sq (AdamW) or momentum_buffer (SGD), and for AdamW its
step t and β1^t, β2^t (a running product, a PAM one in PA mode), so the
step is per parameter as in torch.optim.
"""
import numpy as np
import torch

from .. import optim as _optim
from ..gemm import as_cfg

__all__ = ["AdamW", "SGD", "clip_grad_norm_"]


def _np(t, name):
    if t.device.type != "cpu" or t.dtype != torch.float32:
        raise TypeError("nomul.torch.optim: %s must be a float32 CPU tensor, got %s on %s"
                        % (name, t.dtype, t.device))
    return t.detach().numpy()


class _Inplace:
    """p's storage as a numpy array; a non-contiguous p is updated through a
    contiguous copy written back."""

    def __init__(self, p):
        self.p = p
        self.copy = not p.is_contiguous()
        self.a = _np(p.detach().contiguous() if self.copy else p, "a parameter")

    def done(self):
        if self.copy:
            with torch.no_grad():
                self.p.copy_(torch.from_numpy(self.a))


class AdamW(torch.optim.Optimizer):
    """nomul_adamw per parameter group: lr (a scheduler may change it),
    betas, eps, weight_decay (decoupled, lr·λ·p), cfg, moments ("reference"
    or "delta", PA only). Defaults are torch.optim.AdamW's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 cfg="pam", moments="reference"):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("nomul.torch.optim.AdamW: want lr, eps, weight_decay ≥ 0 and "
                             "betas in [0, 1)")
        if moments not in _optim.MOMENTS:
            raise ValueError("nomul.torch.optim.AdamW: moments must be 'reference' or 'delta'")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, cfg=as_cfg(cfg),
                                      moments=moments))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            o = _optim.AdamW(group["lr"], group["weight_decay"], group["cfg"], group["betas"],
                             group["eps"], group["moments"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError("nomul.torch.optim.AdamW: sparse gradients are not supported")
                st = self.state[p]
                if not st:
                    st["step"], st["beta1_t"], st["beta2_t"] = 0, 1.0, 1.0
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                o.set_state(st["step"], st["beta1_t"], st["beta2_t"])
                o.begin_step()
                st["step"] = o.step
                st["beta1_t"], st["beta2_t"] = o.beta_t
                w = _Inplace(p)
                o.update(w.a, _np(p.grad, "a gradient").reshape(w.a.shape),
                         _np(st["exp_avg"], "exp_avg"), _np(st["exp_avg_sq"], "exp_avg_sq"))
                w.done()
        return loss


class SGD(torch.optim.Optimizer):
    """nomul_sgd per parameter group: lr, momentum, weight_decay, nesterov,
    cfg. Defaults are torch.optim.SGD's (lr required)."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False, cfg="pam"):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("nomul.torch.optim.SGD: want lr, momentum, weight_decay ≥ 0")
        if nesterov and momentum == 0:
            raise ValueError("nomul.torch.optim.SGD: Nesterov momentum needs a momentum")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, cfg=as_cfg(cfg)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            o = _optim.SGD(group["lr"], group["momentum"], group["weight_decay"],
                           group["nesterov"], group["cfg"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                buf = None
                if group["momentum"] != 0:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = torch.zeros_like(
                            p, memory_format=torch.contiguous_format)
                    buf = _np(st["momentum_buffer"], "momentum_buffer")
                w = _Inplace(p)
                o.update(w.a, _np(p.grad, "a gradient").reshape(w.a.shape), buf)
                w.done()
        return loss


@torch.no_grad()
def clip_grad_norm_(parameters, max_norm, cfg="pam"):
    """nomul_clip_grad_norm over the parameters' gradients (in place): the
    norm before clipping, as a float."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    for g in grads:
        if not g.is_contiguous():
            raise ValueError("nomul.torch.optim.clip_grad_norm_: gradients must be contiguous")
    arrays = [_np(g, "a gradient") for g in grads]
    return _optim.clip_grad_norm([a.reshape(-1) for a in arrays], max_norm, cfg)
