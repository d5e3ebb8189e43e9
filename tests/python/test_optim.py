"""nomul.optim and nomul.torch.optim against plain twins: the float AdamW,
SGD and clipping as numpy float32 expressions in the C code's order, the PA
forms composed from nomul.arith's primitives as optim_pa.c composes them
(both bit for bit); the torch optimizers against the numpy ones bit for bit
and nomul's float AdamW against torch.optim.AdamW within a stated bound;
the learning-rate table against its formula; batch norm against a float64
reference and, in PA mode, against the PA layer norm of each channel."""
import math
import unittest

from util import SeededCase

import numpy as np
import torch

import nomul.arith as A
import nomul.functional as F
import nomul.optim as O
import nomul.torch as nt
from nomul.gemm import OpCfg

f32 = np.float32


def pam(a, b, off):
    return A.mul(np.asarray(a, f32).reshape(-1), b if np.isscalar(b) else b.reshape(-1),
                 offset=off).reshape(np.shape(a))


def adamw_twin(o, p, g, m, v, lr, wd, b1, b2, eps, t, pa, off, moments):
    """One step of nomul's AdamW (t ≥ 1 already counted in b1t, b2t)."""
    b1t, b2t = o
    if not pa:
        step = f32(f32(lr) * f32(math.sqrt(f32(1) - b2t))) / (f32(1) - b1t)
        step = f32(step)
        if wd:
            p = p - f32(f32(lr) * f32(wd)) * p
        m = f32(b1) * m + (f32(1) - f32(b1)) * g
        v = f32(b2) * v + (f32(1) - f32(b2)) * g * g
        p = p - step * m / (np.sqrt(v) + f32(eps))
        return p, m, v
    one = lambda x: float(x)
    s = A.div(A.sqrt(np.array([f32(1) - b2t], f32)), np.array([f32(1) - b1t], f32))
    step = pam(np.array([lr], f32), s, off)[0]
    decay = pam(np.array([lr], f32), f32(wd), off)[0]
    if wd:
        p = p - pam(p, one(decay), off)
    if moments == "delta":
        m = m + pam(g - m, one(f32(1) - f32(b1)), off)
        v = v + pam(pam(g, g, off) - v, one(f32(1) - f32(b2)), off)
    else:
        m = pam(m, one(f32(b1)), off) + pam(g, one(f32(1) - f32(b1)), off)
        v = pam(v, one(f32(b2)), off) + pam(pam(g, g, off), one(f32(1) - f32(b2)), off)
    q = A.div(m, A.sqrt(v) + f32(eps))
    p = p - pam(q, one(step), off)
    return p, m, v


class AdamWTwins(SeededCase):
    def run_case(self, pa, off, moments, wd):
        n = int(self.rng.integers(1, 3000))
        p, m, v = self.randn(n), np.zeros(n, f32), np.zeros(n, f32)
        lr, b1, b2, eps = 2e-3, 0.9, 0.999, 1e-8
        cfg = OpCfg("pam", offset=off) if pa else OpCfg("standard")
        o = O.AdamW(lr, wd, cfg, (b1, b2), eps, moments)
        tp, tm, tv = p.copy(), m.copy(), v.copy()
        b1t = b2t = f32(1)
        for t in range(1, 5):
            g = self.randn(n, scale=10.0 ** self.rng.integers(-4, 2))
            o.lr = lr * t / 4
            o.begin_step()
            if pa:
                b1t = A.mul(np.array([b1t], f32), float(f32(b1)))[0]
                b2t = A.mul(np.array([b2t], f32), float(f32(b2)))[0]
            else:
                b1t, b2t = f32(b1t * f32(b1)), f32(b2t * f32(b2))
            self.assertEqual((f32(o.beta_t[0]), f32(o.beta_t[1])), (b1t, b2t))
            o.update(p, g, m, v)
            tp, tm, tv = adamw_twin((b1t, b2t), tp, g, tm, tv, f32(lr * t / 4), wd, b1, b2, eps,
                                    t, pa, off, moments)
            what = "%s off %s %s wd %g step %d" % ("pa" if pa else "float", off, moments, wd, t)
            self.assertBitsEqual(m, tm, "m " + what)
            self.assertBitsEqual(v, tv, "v " + what)
            self.assertBitsEqual(p, tp, "p " + what)

    def test_float(self):
        self.run_case(False, None, "reference", 0.05)
        self.run_case(False, None, "reference", 0.0)

    def test_pa(self):
        for off in (None, 1.0552):
            for moments in ("reference", "delta"):
                for wd in (0.0, 0.05):
                    self.run_case(True, off, moments, wd)

    def test_no_decay_flag(self):
        n = 100
        p, g = self.randn(n), self.randn(n)
        a, b = O.AdamW(1e-2, 0.1, "pam"), O.AdamW(1e-2, 0.0, "pam")
        p1, p2 = p.copy(), p.copy()
        for o, q, d in ((a, p1, False), (b, p2, True)):
            o.begin_step()
            o.update(q, g, np.zeros(n, f32), np.zeros(n, f32), decay=d)
        self.assertBitsEqual(p1, p2, "decay=False is weight_decay 0")

    def test_bad_arguments(self):
        o = O.AdamW()
        p = np.zeros(4, f32)
        with self.assertRaises(TypeError):
            o.update(p.astype(np.float64), p, p.copy(), p.copy())
        with self.assertRaises(ValueError):
            o.update(p, np.zeros(5, f32), p.copy(), p.copy())
        with self.assertRaises(ValueError):
            o.update(np.zeros((4, 2), f32)[:, 0], p, p.copy(), p.copy())
        with self.assertRaises(ValueError):
            O.AdamW(moments="other")


class SGDTwins(SeededCase):
    def test_float_and_pa(self):
        for pa in (False, True):
            for nesterov in (False, True):
                n = int(self.rng.integers(1, 2500))
                lr, mom, wd = 0.05, 0.9, 1e-3
                o = O.SGD(lr, mom, wd, nesterov, "pam" if pa else "standard")
                p, buf = self.randn(n), np.zeros(n, f32)
                tp, tb = p.copy(), buf.copy()
                for _ in range(3):
                    g = self.randn(n)
                    o.update(p, g, buf)
                    if pa:
                        d = g + pam(tp, wd, None)
                        tb = pam(tb, mom, None) + d
                        d = d + pam(tb, mom, None) if nesterov else tb
                        tp = tp - pam(d, lr, None)
                    else:
                        d = g + f32(wd) * tp
                        tb = f32(mom) * tb + d
                        d = d + f32(mom) * tb if nesterov else tb
                        tp = tp - f32(lr) * d
                    self.assertBitsEqual(p, tp, "sgd pa %s nesterov %s" % (pa, nesterov))
                    self.assertBitsEqual(buf, tb, "sgd buffer")


class Clipping(SeededCase):
    def test_float_and_pa(self):
        gs = [self.randn(int(self.rng.integers(1, 500))) for _ in range(3)]
        want = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in gs))
        c = [g.copy() for g in gs]
        norm = O.clip_grad_norm(c, 1.0, "standard")
        self.assertEqual(f32(norm), f32(want))
        scale = f32(f32(1.0) / (f32(want) + f32(1e-6)))
        for a, g in zip(c, gs):
            self.assertBitsEqual(a, g * scale, "float clipping")
        # PA: PAM squares summed in order, pa_sqrt, PAD, PAM
        s = f32(0)
        for g in gs:
            for t in A.mul(g, g):
                s = f32(s + t)
        pn = A.sqrt(np.array([s], f32))[0]
        c = [g.copy() for g in gs]
        self.assertEqual(f32(O.clip_grad_norm(c, 1.0, "pam")), pn)
        ps = A.div(np.array([1.0], f32), np.array([pn + f32(1e-6)], f32))[0]
        for a, g in zip(c, gs):
            self.assertBitsEqual(a, A.mul(g, float(ps)), "PA clipping")
        c = [g.copy() for g in gs]
        O.clip_grad_norm(c, 1e9, "pam")
        for a, g in zip(c, gs):
            self.assertBitsEqual(a, g, "no clipping under max_norm")


class Schedules(unittest.TestCase):
    def test_table(self):
        lr, mn, w, total = 2e-3, 1e-5, 5, 40
        t = O.schedule_table("cosine", lr, mn, w, total)
        for i in range(total):
            if i < w:
                want = f32(f32(lr) * f32(i + 1)) / f32(w)
            else:
                prog = (i - w) / (total - w - 1)
                # lr − min_lr is a float subtraction, the rest double (optim.c)
                want = f32(float(f32(mn)) + 0.5 * float(f32(f32(lr) - f32(mn))) *
                           (1 + math.cos(math.pi * prog)))
            self.assertEqual(t[i], f32(want), "step %d" % i)
            self.assertEqual(f32(O.schedule_lr("cosine", lr, mn, w, total, i)), t[i])
        self.assertTrue(np.all(O.schedule_table("constant", lr, 0, 0, 7) == f32(lr)))
        with self.assertRaises(ValueError):
            O.schedule_table("cosine", lr, 1.0, 0, 10)
        with self.assertRaises(ValueError):
            O.schedule_lr("cosine", lr, mn, w, total, total)
        with self.assertRaises(ValueError):
            O.schedule_table("linear", lr, mn, w, total)


class TorchOptimizers(SeededCase):
    def params(self):
        torch.manual_seed(self.seed)
        return [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]

    def test_adamw_matches_numpy(self):
        for cfg in ("standard", "pam"):
            ps = self.params()
            arrays = [p.detach().numpy().copy() for p in ps]
            ms = [np.zeros_like(a) for a in arrays]
            vs = [np.zeros_like(a) for a in arrays]
            opt = nt.optim.AdamW([{"params": [ps[0]], "weight_decay": 0.05},
                                  {"params": [ps[1]], "weight_decay": 0.0}], lr=1e-2,
                                 betas=(0.9, 0.999), cfg=cfg)
            o = [O.AdamW(1e-2, 0.05, cfg, (0.9, 0.999)), O.AdamW(1e-2, 0.0, cfg, (0.9, 0.999))]
            for step in range(3):
                gs = [self.randn(*a.shape) for a in arrays]
                for p, g in zip(ps, gs):
                    p.grad = torch.from_numpy(g.copy())
                opt.step()
                for k in range(2):
                    o[k].begin_step()
                    o[k].update(arrays[k], gs[k], ms[k], vs[k])
                    self.assertBitsEqual(ps[k].detach().numpy(), arrays[k],
                                         "%s step %d param %d" % (cfg, step, k))
            st = opt.state_dict()
            self.assertEqual(st["state"][0]["step"], 3)

    def test_adamw_against_torch(self):
        """nomul's float AdamW is fairseq's (ε added to √v, the bias
        corrections folded into the step size); torch.optim.AdamW adds ε to
        √v/√(1 − β2^t). With gradients far above ε the two differ by float
        rounding only: every parameter within 1e-6 of |p| + 1e-3·lr·t."""
        ps, qs = self.params(), self.params()
        a = nt.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05, cfg="standard")
        b = torch.optim.AdamW(qs, lr=1e-2, betas=(0.9, 0.999), weight_decay=0.05)
        for t in range(1, 11):
            gs = [torch.randn(p.shape) for p in ps]
            for p, q, g in zip(ps, qs, gs):
                p.grad, q.grad = g.clone(), g.clone()
            a.step()
            b.step()
            for p, q in zip(ps, qs):
                d = (p.detach() - q.detach()).abs()
                lim = 1e-6 * q.detach().abs() + 1e-3 * 1e-2 * t
                self.assertTrue(bool((d <= lim).all()), "step %d: %g" % (t, float(d.max())))

    def test_sgd_matches_numpy_and_torch(self):
        ps, qs = self.params(), self.params()
        arrays = [p.detach().numpy().copy() for p in ps]
        bufs = [np.zeros_like(x) for x in arrays]
        a = nt.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3, cfg="standard")
        b = torch.optim.SGD(qs, lr=0.1, momentum=0.9, weight_decay=1e-3)
        o = O.SGD(0.1, 0.9, 1e-3, False, "standard")
        for _ in range(3):
            gs = [self.randn(*x.shape) for x in arrays]
            for p, q, g in zip(ps, qs, gs):
                p.grad, q.grad = torch.from_numpy(g.copy()), torch.from_numpy(g.copy())
            a.step()
            b.step()
            for k in range(2):
                o.update(arrays[k], gs[k], bufs[k])
                self.assertBitsEqual(ps[k].detach().numpy(), arrays[k], "sgd")
                d = float((ps[k].detach() - qs[k].detach()).abs().max())
                self.assertLessEqual(d, 1e-6, "nomul's float SGD against torch's")

    def test_refusals(self):
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        p.grad = torch.zeros(3, dtype=torch.float64)
        with self.assertRaises(TypeError):
            nt.optim.AdamW([p]).step()
        with self.assertRaises(ValueError):
            nt.optim.AdamW(self.params(), lr=-1)
        with self.assertRaises(ValueError):
            nt.optim.SGD(self.params(), lr=0.1, nesterov=True)


class BatchNorm(SeededCase):
    def test_float_against_float64(self):
        x = self.randn(4, 3, 5, 5)
        g, b = self.randn(3), self.randn(3)
        rm, rv = np.zeros(3, f32), np.ones(3, f32)
        y, mean, rstd = F.batch_norm(x, g, b, rm, rv, True, 0.1, 1e-5, "standard")
        xd = x.astype(np.float64)
        mu = xd.mean(axis=(0, 2, 3))
        var = xd.var(axis=(0, 2, 3))
        want = (xd - mu[None, :, None, None]) / np.sqrt(var + 1e-5)[None, :, None, None]
        want = want * g[None, :, None, None] + b[None, :, None, None]
        self.assertLess(np.abs(y - want).max(), 1e-5)
        np.testing.assert_allclose(rm, 0.1 * mu, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(rv, 0.9 + 0.1 * xd.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
        # against torch's BatchNorm2d, forward and backward
        tx = torch.from_numpy(x.copy()).requires_grad_()
        bn = torch.nn.BatchNorm2d(3)
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(g))
            bn.bias.copy_(torch.from_numpy(b))
        dy = self.randn(*x.shape)
        bn(tx).backward(torch.from_numpy(dy))
        dx, dg, db = F.batch_norm_backward(x, g, mean, rstd, dy, 1e-5, "standard")
        self.assertLess(np.abs(dx - tx.grad.numpy()).max(), 1e-4)
        self.assertLess(np.abs(dg - bn.weight.grad.numpy()).max(), 1e-4)
        self.assertLess(np.abs(db - bn.bias.grad.numpy()).max(), 1e-4)

    @staticmethod
    def _lane_sum(v):
        """float32 sum in 16 interleaved lanes (value j into lane j mod 16, in
        order), the lanes then added pairwise: batch norm's sums."""
        acc = np.zeros(16, f32)
        for j, t in enumerate(v.astype(f32)):
            acc[j % 16] = f32(acc[j % 16] + t)
        w = 8
        while w >= 1:
            acc[:w] = (acc[:w] + acc[w:2 * w]).astype(f32)
            w //= 2
        return f32(acc[0])

    def test_pa_is_the_layer_norm_of_each_channel(self):
        """PA batch norm: per channel, the PA layer-norm recipe over its n·S
        values, the sums in 16 lanes (a channel is tens of thousands long)."""
        x = self.randn(3, 4, 2, 3)
        g, b = self.randn(4), self.randn(4)
        eps = f32(1e-5)
        for approx in (False, True):
            cfg = OpCfg("pam", approx_bwd=approx)
            y, mean, rstd = F.batch_norm(x, g, b, np.zeros(4, f32), np.ones(4, f32), True, 0.1,
                                         1e-5, cfg)
            for c in range(4):
                row = np.ascontiguousarray(x[:, c].reshape(-1))
                n = f32(row.size)
                mu = A.div(np.array([self._lane_sum(row)], f32), n)[0]
                d = (row - mu).astype(f32)
                q = self._lane_sum(A.mul(d, d))
                r = A.sqrt(np.array([A.div(np.array([q], f32), n)[0] + eps], f32))[0]
                want = (A.mul(A.div(d, r), g[c]) + b[c]).astype(f32)
                self.assertBitsEqual(y[:, c].reshape(-1), want, "channel %d" % c)
                self.assertBitsEqual(mean[c:c + 1], np.array([mu], f32), "mean")
                self.assertBitsEqual(rstd[c:c + 1], np.array([r], f32), "rstd")

    def test_torch_module(self):
        x = torch.from_numpy(self.randn(2, 3, 4, 4)).requires_grad_()
        bn = nt.BatchNorm2d(3)
        y = bn(x)
        y.sum().backward()
        self.assertEqual(int(bn.num_batches_tracked), 1)
        self.assertTrue(bool((bn.running_mean != 0).any()))
        self.assertEqual(x.grad.shape, x.shape)
        bn.eval()
        with torch.no_grad():
            ref = torch.nn.BatchNorm2d(3)
            ref.load_state_dict(bn.state_dict())
            ref.eval()
            self.assertEqual(bn(x).shape, x.shape)
        with self.assertRaises(RuntimeError):
            bn(x)
        with self.assertRaises(ValueError):
            nt.BatchNorm2d(3, momentum=None)


if __name__ == "__main__":
    unittest.main()
