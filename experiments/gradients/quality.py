#!/usr/bin/env python3
"""experiments/gradients/quality.py — how well each backward of the PA
composites predicts what the PA function does over a training step.

The exact derivative of a piecewise affine function is its true derivative:
at a point it is right. Training moves by finite steps, and the PA functions
have kinks everywhere (every mantissa carry of a PAM, every exponent boundary
of pa_exp2 / pa_log2). Between a point and a point a step away the slope can
change many times, so a derivative that is exact at the point may predict the
change over the step worse than a smooth formula does.

For each operation f (PA, with the repository's offset) and a random upstream
gradient dy, the scalar l(x) = <dy, f(x)> is probed along random unit
directions u at relative step sizes h (h times the RMS of x): the observed
central difference (l(x + h s u) − l(x − h s u)) / (2 h s) against each
backward's prediction <g, u>, with g from:
  float   the float function's derivative (what a float model would follow)
  exact   the derivative of the PA function (nomul's exact backward)
  approx  the float formula computed in PA (nomul's approximate backward)
Printed per op and step size: the correlation of prediction and observation
over all (point, direction) samples, and the slope of observation on
prediction (1 = unbiased magnitude). Also the cosine of each PA gradient with
the float derivative, and for shift-invariant ops (softmax over logits, log-
softmax, layer norm's input) the share of the gradient's norm that lies along
the all-ones direction, which the float derivative has none of (a gradient
component the function itself, shifted, would not respond to in float).

  PYTHONPATH=python python3 experiments/gradients/quality.py [--samples N] [--seed S]
"""
import argparse
import sys

import numpy as np

from nomul import functional as F
from nomul.gemm import OpCfg, gemm, gemm_backward

FLOAT = OpCfg("standard")
EXACT = OpCfg("pam", approx_bwd=False)
APPROX = OpCfg("pam", approx_bwd=True)


def ops(rng, rows):
    """name -> (x, forward(x, cfg), backward(x, dy, cfg), shift_invariant)"""
    n_att, n_ln, n_voc, k = 32, 128, 1000, 128

    def softmax_f(x, c):
        return F.softmax(x, c)

    def softmax_b(x, dy, c):
        return F.softmax_backward(x, F.softmax(x, c), dy, c)

    def lsm_f(x, c):
        return F.log_softmax(x, c)

    def lsm_b(x, dy, c):
        return F.log_softmax_backward(x, F.log_softmax(x, c), dy, c)

    gamma = (1.0 + 0.1 * rng.standard_normal(n_ln)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(n_ln)).astype(np.float32)

    def ln_f(x, c):
        return F.layer_norm(x, gamma, beta, 1e-5, c)[0]

    def ln_b(x, dy, c):
        _, mean, rstd = F.layer_norm(x, gamma, beta, 1e-5, c)
        return F.layer_norm_backward(x, gamma, mean, rstd, dy, 1e-5, c)[0]

    def gelu_f(x, c):
        return F.gelu(x, c)

    def gelu_b(x, dy, c):
        return F.gelu_backward(x, dy, c)

    w = (rng.standard_normal((k, 64)) / np.sqrt(k)).astype(np.float32)

    def mm_f(x, c):
        return gemm(x, w, c)

    def mm_b(x, dy, c):
        return gemm_backward(x, w, dy, c, need_b=False)[0]

    return {
        "softmax (attention, n=32)": (2.0 * rng.standard_normal((rows, n_att)), softmax_f,
                                      softmax_b, True),
        "log_softmax (vocabulary, n=1000)": (3.0 * rng.standard_normal((rows, n_voc)), lsm_f,
                                             lsm_b, True),
        "layer_norm (n=128)": (0.3 + rng.standard_normal((rows, n_ln)), ln_f, ln_b, True),
        "gelu": (rng.standard_normal((rows, 128)), gelu_f, gelu_b, False),
        "PAM product (k=128)": (rng.standard_normal((rows, k)), mm_f, mm_b, False),
    }


def corr_slope(pred, obs):
    pred, obs = np.asarray(pred, np.float64), np.asarray(obs, np.float64)
    pc, oc = pred - pred.mean(), obs - obs.mean()
    den = np.sqrt((pc * pc).sum() * (oc * oc).sum())
    return (pc * oc).sum() / den if den > 0 else float("nan"), \
        (pred * obs).sum() / (pred * pred).sum()


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def ones_share(g):
    """mean over rows of |projection on 1| / |g|"""
    g = g.astype(np.float64)
    n = g.shape[-1]
    along = np.abs(g.sum(-1)) / np.sqrt(n)
    norm = np.sqrt((g * g).sum(-1))
    return float(np.mean(along / np.maximum(norm, 1e-30)))


def measure(rng, samples, steps):
    """One row per (op, backward): dicts with op, backward, cos (with the
    float derivative), ones (share along 1, None where not shift-invariant)
    and fit: a (correlation, slope) pair per step size."""
    out = []
    for name, (x, f, b, shift) in ops(rng, samples).items():
        x = x.astype(np.float32)
        dy = rng.standard_normal(f(x, FLOAT).shape).astype(np.float32)
        u = rng.standard_normal(x.shape)
        u = (u / np.linalg.norm(u, axis=-1, keepdims=True)).astype(np.float32)
        scale = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        gf = b(x, dy, FLOAT)
        grads = {"float": gf, "exact": b(x, dy, EXACT), "approx": b(x, dy, APPROX)}
        fits = {k: [] for k in grads}
        for h in steps:
            s = np.float32(h * scale)
            xp, xm = x + s * u, x - s * u
            # the change actually taken (float32 rounding of x ± s u included)
            dist = np.linalg.norm((xp - xm).astype(np.float64), axis=-1) / 2
            obs = ((dy * (f(xp, EXACT) - f(xm, EXACT))).astype(np.float64).sum(-1)
                   / (2 * dist))
            for k, g in grads.items():
                pred = (g.astype(np.float64) * (xp - xm) / (2 * dist[:, None])).sum(-1)
                fits[k].append(corr_slope(pred, obs))
        for k, g in grads.items():
            out.append({"op": name, "backward": k, "cos": cosine(g, gf),
                        "ones": ones_share(g) if shift else None, "fit": fits[k]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2000, help="points per op (default 2000)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    steps = [1e-4, 1e-3, 1e-2, 1e-1]
    print("# gradient quality of the PA composites, %d points per op, seed %d" % (a.samples, seed))
    print("| op | backward | cos with float derivative | ones share | "
          + " | ".join("corr / slope at h=%g" % h for h in steps) + " |")
    print("|---|---|---|---|" + "---|" * len(steps))
    for r in measure(np.random.default_rng(seed), a.samples, steps):
        print("| %s | %s | %s | %s | %s |" % (
            r["op"], r["backward"], "1" if r["backward"] == "float" else "%.4f" % r["cos"],
            "–" if r["ones"] is None else "%.4f" % r["ones"],
            " | ".join("%.3f / %.2f" % cs for cs in r["fit"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
