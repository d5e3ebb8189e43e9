"""nomul.torch.vit — nomul's ViT (src/models/vit.c) as a torch.nn.Module
built from nomul.torch's operations, with the same structure, operation
order and parameter names (timm's, q, k and v apart) as `nomul train`'s, so
a nomul checkpoint loads into it and a step through it computes what a
step of `nomul train` computes (tests/python/test_train_equivalence.py).

    model = ViT.from_checkpoint("runs/x/checkpoint_last.safetensors")
    model = ViT("vit_fmnist_tiny", cfgs="pam")          # every family PA
    model = ViT("vit_fmnist", cfgs={"linear": "standard", "norm": OpCfg("pam", True)})

cfgs names an OpCfg per operation family, as the trainer's *_cfg keys:
linear, conv, bmm, norm, functional (softmax, GELU, the attention's scale)
and loss (ViT.loss); one OpCfg or subtype name sets them all. A "standard"
family runs PyTorch's own float operations (torch.nn.functional), a PA one
nomul's kernels through nomul.torch.

Parameters start as torch's modules initialise them (not timm's
initialisation, which `nomul train` uses): load weights to reproduce a run.
"""
import json

import numpy as np
import torch
import torch.nn.functional as TF

from .. import arith as _arith
from .. import safetensors as _st
from ..gemm import OpCfg, as_cfg
from . import (Conv2d as _PConv2d, Linear as _PLinear, LayerNorm as _PLayerNorm,
               bmm as _pbmm, cross_entropy as _pce, gelu as _pgelu, mul as _pmul,
               softmax as _psoftmax)

__all__ = ["ViT", "CONFIGS", "FAMILIES"]

# vit.c's named sizes: image, channels, patch, dim, depth, heads, mlp, classes
CONFIGS = {
    "vit_fmnist": (28, 1, 7, 64, 4, 4, 128, 10),
    "vit_fmnist_p4": (28, 1, 4, 64, 4, 4, 128, 10),
    "vit_fmnist_tiny": (28, 1, 4, 32, 2, 2, 64, 10),
    "deit_tiny_patch16_224": (224, 3, 16, 192, 12, 3, 768, 1000),
}
FAMILIES = ("linear", "conv", "bmm", "norm", "functional", "loss")
EPS = 1e-6  # vit.c's layer norms


def _cfgs(cfgs):
    if cfgs is None or isinstance(cfgs, (str, OpCfg)):
        c = as_cfg(cfgs)
        return {f: c for f in FAMILIES}
    unknown = set(cfgs) - set(FAMILIES)
    if unknown:
        raise ValueError("nomul.torch.vit: unknown families %s (families: %s)"
                         % (sorted(unknown), ", ".join(FAMILIES)))
    return {f: as_cfg(cfgs.get(f)) for f in FAMILIES}


def _kw(cfg):
    return {"approx_bwd": cfg.approx_bwd, "offset": None if cfg.offset == 1.0 else cfg.offset}


class _AddOverBatch(torch.autograd.Function):
    """y = x + p for x (b, ...) and p (1, ...): dp sums dy over the batch in
    order, as nomul's broadcasting add accumulates it (torch's own sum may
    associate differently)."""

    @staticmethod
    def forward(ctx, x, p):
        return x + p

    @staticmethod
    def backward(ctx, dy):
        d = dy.detach().contiguous().numpy()
        acc = np.zeros(d.shape[1:], dtype=np.float32)
        for i in range(d.shape[0]):
            acc += d[i]
        return dy, torch.from_numpy(acc).unsqueeze(0)


def _linear(cfg):
    return (torch.nn.Linear if not cfg.is_pa else
            lambda i, o: _PLinear(i, o, **_kw(cfg)))


class _Attention(torch.nn.Module):
    def __init__(self, dim, heads, cfgs):
        super().__init__()
        lin = _linear(cfgs["linear"])
        self.q, self.k, self.v, self.proj = lin(dim, dim), lin(dim, dim), lin(dim, dim), lin(dim, dim)
        self.heads, self.bmm, self.fun = heads, cfgs["bmm"], cfgs["functional"]
        dh = dim // heads
        if self.fun.is_pa:  # vit.c: PAD(1, pa_sqrt(dh))
            self.scale = float(_arith.div(1.0, _arith.sqrt(np.array([dh], np.float32)))[0])
        else:
            self.scale = float(np.float32(1.0) / np.sqrt(np.float32(dh)))

    def _split(self, x):  # (b, t, heads·dh) → (b·heads, t, dh)
        b, t, d = x.shape
        return x.reshape(b, t, self.heads, d // self.heads).transpose(1, 2).reshape(
            b * self.heads, t, d // self.heads)

    def forward(self, x):
        b, t, d = x.shape
        # nomul_attention's arguments, recorded in the order GCC evaluates them
        v, k, q = self.v(x), self.k(x), self.q(x)
        qh, kh, vh = self._split(q), self._split(k), self._split(v)
        if self.bmm.is_pa:
            s = _pbmm(qh, kh.transpose(1, 2), **_kw(self.bmm))
        else:
            s = torch.bmm(qh, kh.transpose(1, 2))
        if self.fun.is_pa:
            s = _pmul(s, torch.tensor(self.scale, dtype=torch.float32), **_kw(self.fun))
            p = _psoftmax(s, dim=-1, **_kw(self.fun))
        else:
            p = torch.softmax(s * self.scale, dim=-1)
        o = _pbmm(p, vh, **_kw(self.bmm)) if self.bmm.is_pa else torch.bmm(p, vh)
        o = o.reshape(b, self.heads, t, d // self.heads).transpose(1, 2).reshape(b, t, d)
        return self.proj(o)


class _Mlp(torch.nn.Module):
    def __init__(self, dim, mlp, cfgs):
        super().__init__()
        lin = _linear(cfgs["linear"])
        self.fc1, self.fc2 = lin(dim, mlp), lin(mlp, dim)
        self.fun = cfgs["functional"]

    def forward(self, x):
        h = self.fc1(x)
        h = _pgelu(h, **_kw(self.fun)) if self.fun.is_pa else TF.gelu(h)
        return self.fc2(h)


def _norm(dim, cfg):
    if cfg.is_pa:
        return _PLayerNorm(dim, eps=EPS, **_kw(cfg))
    return torch.nn.LayerNorm(dim, eps=EPS)


class _Block(torch.nn.Module):
    def __init__(self, dim, heads, mlp, cfgs):
        super().__init__()
        self.norm1 = _norm(dim, cfgs["norm"])
        self.attn = _Attention(dim, heads, cfgs)
        self.norm2 = _norm(dim, cfgs["norm"])
        self.mlp = _Mlp(dim, mlp, cfgs)

    def forward(self, h):
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class _PatchEmbed(torch.nn.Module):
    def __init__(self, channels, dim, patch, cfg):
        super().__init__()
        if cfg.is_pa:
            self.proj = _PConv2d(channels, dim, patch, stride=patch, **_kw(cfg))
        else:
            self.proj = torch.nn.Conv2d(channels, dim, patch, stride=patch)


class ViT(torch.nn.Module):
    """vit.c's ViT: a name of CONFIGS (with image, channels, classes
    overriding its sizes, as the trainer's data.* keys do) and cfgs."""

    def __init__(self, name="vit_fmnist_tiny", cfgs=None, image=None, channels=None,
                 classes=None):
        super().__init__()
        if name not in CONFIGS:
            raise ValueError("nomul.torch.vit: model %r is not one of %s"
                             % (name, ", ".join(CONFIGS)))
        im, ch, patch, dim, depth, heads, mlp, cl = CONFIGS[name]
        im, ch, cl = image or im, channels or ch, classes or cl
        if im % patch:
            raise ValueError("nomul.torch.vit: image size %d is not a multiple of the patch %d"
                             % (im, patch))
        self.name, self.image, self.channels, self.patch = name, im, ch, patch
        self.cfgs = _cfgs(cfgs)
        t = (im // patch) ** 2 + 1
        self.patch_embed = _PatchEmbed(ch, dim, patch, self.cfgs["conv"])
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, t, dim))
        self.blocks = torch.nn.ModuleList(_Block(dim, heads, mlp, self.cfgs)
                                          for _ in range(depth))
        self.norm = _norm(dim, self.cfgs["norm"])
        self.head = _linear(self.cfgs["linear"])(dim, cl)

    def forward(self, x):
        b = x.shape[0]
        h = self.patch_embed.proj(x)  # (b, d, s, s)
        h = h.flatten(2).transpose(1, 2)  # (b, t, d)
        cls = _AddOverBatch.apply(torch.zeros(b, 1, h.shape[2]), self.cls_token)
        h = _AddOverBatch.apply(torch.cat([cls, h], 1), self.pos_embed)
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h)[:, 0])

    def loss(self, logits, target, label_smoothing=0.0):
        """The trainer's loss: label-smoothed cross-entropy (loss family)."""
        cfg = self.cfgs["loss"]
        if cfg.is_pa:
            return _pce(logits, target, label_smoothing=label_smoothing, **_kw(cfg))
        return TF.cross_entropy(logits, target.long(), label_smoothing=label_smoothing)

    def nomul_parameters(self):
        """(name, parameter) in nomul's order (the checkpoint's: patch_embed,
        cls_token, pos_embed, blocks, norm, head), the order in which the
        trainer sums the squares of the gradients when it clips them."""
        named = dict(self.named_parameters())
        first = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]
        return [(n, named[n]) for n in first] + [(n, p) for n, p in named.items()
                                                 if n not in first]

    def param_groups(self, weight_decay):
        """The trainer's two AdamW groups: matrices (and the patch kernel)
        with weight decay, biases, norms, tokens and positions without."""
        named = self.nomul_parameters()
        decay = [p for n, p in named if n.endswith(".weight") and p.dim() > 1]
        rest = [p for n, p in named if not (n.endswith(".weight") and p.dim() > 1)]
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": rest, "weight_decay": 0.0}]

    def load_nomul(self, tensors):
        """Copies a nomul checkpoint's parameters (nomul.safetensors.load's
        dict; optimizer.* entries are skipped) into the model; every parameter
        must be there with its shape."""
        own = dict(self.named_parameters())
        missing = [n for n in own if n not in tensors]
        if missing:
            raise ValueError("nomul.torch.vit: the checkpoint lacks %s" % ", ".join(missing))
        with torch.no_grad():
            for n, p in own.items():
                a = tensors[n]
                if tuple(a.shape) != tuple(p.shape):
                    raise ValueError("nomul.torch.vit: %s has shape %s in the checkpoint, %s "
                                     "in the model" % (n, a.shape, tuple(p.shape)))
                p.copy_(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
        return self

    @classmethod
    def from_checkpoint(cls, path, cfgs=None):
        """The model a nomul checkpoint names (nomul.config: model, data sizes,
        *_cfg keys unless cfgs is given) with its weights."""
        tensors, meta = _st.load(path)
        try:
            conf = json.loads(meta["nomul.config"])
        except (KeyError, ValueError):
            raise ValueError("%s: no nomul.config metadata (not a nomul checkpoint)" % path) \
                from None
        if cfgs is None:
            cfgs = {f: _cfg_of(conf.get(f + "_cfg" if f != "loss" else "loss_functional_cfg"))
                    for f in FAMILIES}
        m = cls(conf["model"], cfgs, image=conf.get("data.image"),
                channels=conf.get("data.channels"), classes=conf.get("data.classes"))
        return m.load_nomul(tensors)


def _cfg_of(v):
    """An OpCfg from a *_cfg value as the configuration JSON writes it."""
    if v is None or isinstance(v, str):
        return as_cfg(v or "standard")
    d = v.get("dkwargs", {})
    return OpCfg(v.get("subtype", "pam"), approx_bwd=d.get("approx_bwd", False),
                 offset=d.get("offset"))
