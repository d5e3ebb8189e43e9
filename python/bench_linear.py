#!/usr/bin/env python3
"""bench_linear.py — nomul.torch.Linear (PAM products, exact and approximate
backward) against torch.nn.Linear (float, MKL/OpenBLAS) on the same shapes:
forward + backward of one (batch, in) → (batch, out) layer, best of a few
timed repeats, and the ratio nomul / torch; then one pre-norm ViT block
(vit_fmnist's sizes: 17 tokens, width 64, 4 heads, MLP 128, batch 64)
forward + backward through nomul.torch (fully PA) against torch float; then
a whole training step of vit_fmnist (nomul.torch.vit.ViT, batch 64 of 28×28
images: forward, loss, backward, AdamW) fully PA through nomul.torch and its
nomul.torch.optim.AdamW against the same model in torch float with
torch.optim.AdamW, in images per second.

    PYTHONPATH=python /usr/bin/python3 python/bench_linear.py [--threads N]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import nomul.torch as pt  # noqa: E402
from nomul.torch.optim import AdamW  # noqa: E402
from nomul.torch.vit import ViT  # noqa: E402

SHAPES = [(128, 192, 192), (256, 192, 768), (256, 768, 192), (1024, 512, 512)]


def step_time(layer, x, min_time):
    def once():
        x.grad = None
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
    return step_time_fn(once, min_time)


def step_time_fn(once, min_time):
    """The best time of once() over repeats filling min_time, after a warm-up call."""
    once()
    best, spent = float("inf"), 0.0
    while spent < min_time:
        t0 = time.perf_counter()
        once()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return best


class Block(torch.nn.Module):
    """A pre-norm transformer block written once over a namespace of ops
    (nomul.torch or torch's own), so both sides compute the same graph."""

    def __init__(self, ops, width=64, heads=4, mlp=128):
        super().__init__()
        self.ops, self.heads = ops, heads
        lin = ops.Linear if ops is not None else torch.nn.Linear
        norm = ops.LayerNorm if ops is not None else torch.nn.LayerNorm
        self.ln1, self.ln2 = norm(width), norm(width)
        self.qkv, self.proj = lin(width, 3 * width), lin(width, width)
        self.fc1, self.fc2 = lin(width, mlp), lin(mlp, width)

    def forward(self, x):
        ops, b, t, c = self.ops, x.shape[0], x.shape[1], x.shape[2]
        bmm = ops.bmm if ops is not None else torch.bmm
        softmax = ops.softmax if ops is not None else torch.softmax
        gelu = ops.gelu if ops is not None else torch.nn.functional.gelu
        h, d = self.heads, c // self.heads
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, h, d).permute(2, 0, 3, 1, 4) \
            .reshape(3, b * h, t, d).unbind(0)
        scale = torch.tensor(d ** -0.5)
        q = ops.mul(q, scale) if ops is not None else q * scale
        att = softmax(bmm(q, k.transpose(1, 2)), dim=-1)
        y = bmm(att, v).reshape(b, h, t, d).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.fc2(gelu(self.fc1(self.ln2(x))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); "
                    "nomul's follow NOMUL_NUM_THREADS")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("%d CPUs, load average %.1f at the start (other work on the machine slows both "
          "sides, unevenly); torch threads %d" % (os.cpu_count(), os.getloadavg()[0],
                                                  torch.get_num_threads()))
    print("%-18s %12s %12s %12s %8s %8s" % ("batch×in→out", "torch ms", "pam ms", "pam≈ ms",
                                           "ratio", "ratio≈"))
    for batch, fin, fout in SHAPES:
        x = torch.randn(batch, fin, requires_grad=True)
        ref = torch.nn.Linear(fin, fout)
        exact = pt.Linear(fin, fout)
        approx = pt.Linear(fin, fout, approx_bwd=True)
        t_ref = step_time(ref, x, args.min_time)
        t_ex = step_time(exact, x, args.min_time)
        t_ap = step_time(approx, x, args.min_time)
        print("%-18s %12.3f %12.3f %12.3f %8.2f %8.2f"
              % ("%d×%d→%d" % (batch, fin, fout), 1e3 * t_ref, 1e3 * t_ex, 1e3 * t_ap,
                 t_ex / t_ref, t_ap / t_ref))

    x = torch.randn(64, 17, 64, requires_grad=True)
    t_ref = step_time(Block(None), x, args.min_time)
    t_pa = step_time(Block(pt), x, args.min_time)
    print("ViT block (64×17×64) torch %.3f ms, nomul.torch PA %.3f ms, ratio %.2f"
          % (1e3 * t_ref, 1e3 * t_pa, t_pa / t_ref))

    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    times = {}
    for cfg in ("standard", "pam"):
        torch.manual_seed(0)
        model = ViT("vit_fmnist", cfg)
        opt = (AdamW(model.param_groups(0.05), lr=1e-3, cfg="pam") if cfg == "pam" else
               torch.optim.AdamW(model.param_groups(0.05), lr=1e-3))

        def train_step(model=model, opt=opt):
            opt.zero_grad()
            model.loss(model(x), y, 0.1).backward()
            opt.step()
        times[cfg] = step_time_fn(train_step, args.min_time)
    print("vit_fmnist training step (batch 64): torch float %.1f ms (%.0f images/s), "
          "nomul.torch PA %.1f ms (%.0f images/s), ratio %.2f"
          % (1e3 * times["standard"], 64 / times["standard"], 1e3 * times["pam"],
             64 / times["pam"], times["pam"] / times["standard"]))


if __name__ == "__main__":
    main()
