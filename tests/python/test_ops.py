"""nomul.gemm and nomul.functional: the PA products against a plain
elementwise-PAM reference (sums in float64, so a stated tolerance), the
approximate backward against the spec's two PAM products, standard mode and
the composites against torch, and the errors."""
import os
import sys
import unittest

import numpy as np
import torch

from util import ROOT, SeededCase

from nomul import NomulError, OpCfg, arith, gemm
from nomul import functional as F

EPS32 = np.finfo(np.float32).eps


def pam_outer(a, b):
    """P[i, k, j] = PAM(a_ik, b_kj) for a (m, k), b (k, n)."""
    m, k = a.shape
    n = b.shape[1]
    A = np.ascontiguousarray(np.broadcast_to(a[:, :, None], (m, k, n)))
    B = np.ascontiguousarray(np.broadcast_to(b[None, :, :], (m, k, n)))
    return A, B


class Close:
    def assertSumClose(self, got, terms, axis, what):
        """got equals the float64 sum of terms along axis up to float32 rounding
        of a sum of that many terms."""
        ref = terms.astype(np.float64).sum(axis=axis)
        tol = 4 * terms.shape[axis] * EPS32 * np.abs(terms.astype(np.float64)).sum(axis=axis) \
            + 1e-30
        err = np.abs(got.astype(np.float64) - ref)
        self.assertTrue((err <= tol).all(), "%s: max error %g over tolerance (max %g)"
                        % (what, (err - tol).max(), tol.max()))


class Gemm(SeededCase, Close):
    def test_pa_forward_and_backward(self):
        m, k, n = 7, 19, 5
        for offset in (None, 1.0552):
            cfg = OpCfg("pam", offset=offset)
            a, b, dc = self.randn(m, k), self.randn(k, n), self.randn(m, n)
            A, B = pam_outer(a, b)
            c = gemm.gemm(a, b, cfg)
            self.assertSumClose(c, arith.mul(A, B, offset=offset), 1, "PA gemm")
            # transposed operands give the same products
            self.assertSumClose(gemm.gemm(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T),
                                          cfg, trans_a=True, trans_b=True),
                                arith.mul(A, B, offset=offset), 1, "PA gemm (T, T)")
            DC = np.ascontiguousarray(np.broadcast_to(dc[:, None, :], (m, k, n)))
            dA, dB = arith.mul_grad(A, B, DC, offset=offset)
            da, db = gemm.gemm_backward(a, b, dc, cfg)
            self.assertSumClose(da, dA, 2, "exact dA")
            self.assertSumClose(db, dB, 0, "exact dB")
            # approximate: dA = dC · Bᵀ and dB = Aᵀ · dC, PAM products
            cfg_a = OpCfg("pam", approx_bwd=True, offset=offset)
            da, db = gemm.gemm_backward(a, b, dc, cfg_a)
            dA, dB = arith.mul(DC, B, offset=offset), arith.mul(A, DC, offset=offset)
            self.assertSumClose(da, dA, 2, "approx dA")
            self.assertSumClose(db, dB, 0, "approx dB")
            da2 = gemm.gemm(dc, b, cfg_a, trans_b=True)
            self.assertSumClose(da2, dA, 2, "dC · Bᵀ")

    def test_standard_matches_numpy(self):
        a, b = self.randn(6, 11), self.randn(11, 4)
        np.testing.assert_allclose(gemm.gemm(a, b, "standard"), a @ b, rtol=1e-5, atol=1e-5)
        c = gemm.gemm(a, b, "standard")
        gemm.gemm(a, b, "standard", out=c, accumulate=True)
        np.testing.assert_allclose(c, 2 * (a @ b), rtol=1e-5, atol=1e-5)
        dc = self.randn(6, 4)
        da, db = gemm.gemm_backward(a, b, dc, "standard")
        np.testing.assert_allclose(da, dc @ b.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db, a.T @ dc, rtol=1e-5, atol=1e-5)

    def test_bmm_is_gemm_per_batch(self):
        for cfg in (OpCfg("pam"), OpCfg("pam", approx_bwd=True, offset=1.0552)):
            a, b, dc = self.randn(3, 5, 8), self.randn(3, 8, 6), self.randn(3, 5, 6)
            c = gemm.bmm(a, b, cfg)
            da, db = gemm.bmm_backward(a, b, dc, cfg)
            for i in range(3):
                self.assertBitsEqual(c[i], gemm.gemm(a[i], b[i], cfg), "bmm %d" % i)
                da_i, db_i = gemm.gemm_backward(a[i], b[i], dc[i], cfg)
                self.assertBitsEqual(da[i], da_i, "bmm dA %d" % i)
                self.assertBitsEqual(db[i], db_i, "bmm dB %d" % i)

    def test_errors(self):
        a = self.randn(3, 4)
        with self.assertRaisesRegex(ValueError, "inner dimensions differ"):
            gemm.gemm(a, a)
        with self.assertRaisesRegex(ValueError, "subtype must be one of"):
            OpCfg("float")
        with self.assertRaisesRegex(NomulError, "nomul_gemm: .*offset"):
            gemm.gemm(a, a.T.copy(), OpCfg("pam", offset=float("nan")))
        with self.assertRaisesRegex(TypeError, "dtype float32"):
            gemm.gemm(a.astype(np.float16), a.T.copy())
        huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 2**31), (0, 0))
        with self.assertRaisesRegex(ValueError, "does not fit the C API's int"):
            gemm.gemm(huge.T, np.zeros((1, 1), np.float32))
        self.assertEqual(gemm.gemm(np.zeros((0, 3), np.float32), a).shape, (0, 4))


class Conv(SeededCase, Close):
    def test_standard_matches_torch(self):
        x, w, bias = self.randn(2, 4, 7, 6), self.randn(6, 2, 3, 2), self.randn(6)
        geo = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
        y = gemm.conv2d(x, w, bias, "standard", **geo)
        xt, wt, bt = (torch.from_numpy(v).requires_grad_() for v in (x, w, bias))
        yt = torch.nn.functional.conv2d(xt, wt, bt, **geo)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        dy = self.randn(*y.shape)
        yt.backward(torch.from_numpy(dy))
        dx, dw, db = gemm.conv2d_backward(x, w, dy, "standard", **geo)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-4, atol=1e-4)

    def test_pa_is_pam_gemm_over_patches(self):
        x, w = self.randn(1, 3, 6, 5), self.randn(4, 3, 3, 3)
        cfg = OpCfg("pam", offset=1.0552)
        y = gemm.conv2d(x, w, None, cfg, padding=1)
        cols = torch.nn.functional.unfold(torch.from_numpy(x), 3, padding=1)[0].numpy()
        W = w.reshape(4, -1)
        A, B = pam_outer(W, np.ascontiguousarray(cols))
        self.assertSumClose(y.reshape(4, -1), arith.mul(A, B, offset=1.0552), 1, "PA conv")

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "input channels per group"):
            gemm.conv2d(self.randn(1, 3, 5, 5), self.randn(2, 2, 3, 3))
        with self.assertRaisesRegex(NomulError, "conv2d"):
            gemm.conv2d(self.randn(1, 3, 2, 2), self.randn(2, 3, 3, 3))


class Functional(SeededCase):
    def test_standard_matches_torch(self):
        x = self.randn(5, 9, scale=3.0)
        xt = torch.from_numpy(x).requires_grad_()
        dy = self.randn(5, 9)
        for name, fwd, bwd, tf in (
                ("softmax", F.softmax, F.softmax_backward, lambda t: t.softmax(-1)),
                ("log_softmax", F.log_softmax, F.log_softmax_backward,
                 lambda t: t.log_softmax(-1))):
            y = fwd(x, "standard")
            yt = tf(xt)
            np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
            (g,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy))
            np.testing.assert_allclose(bwd(x, y, dy, "standard"), g.numpy(), rtol=1e-4,
                                       atol=1e-5, err_msg=name)
        lse = F.logsumexp(x, "standard")
        np.testing.assert_allclose(lse, torch.logsumexp(xt, -1).detach().numpy(), rtol=1e-5)
        gam, bet = self.randn(9), self.randn(9)
        y, mean, rstd = F.layer_norm(x, gam, bet, 1e-5, "standard")
        gt, bt = torch.from_numpy(gam).requires_grad_(), torch.from_numpy(bet).requires_grad_()
        yt = torch.nn.functional.layer_norm(xt, (9,), gt, bt, 1e-5)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        dx, dg, db = F.layer_norm_backward(x, gam, mean, rstd, dy, 1e-5, "standard")
        want = torch.autograd.grad(yt, (xt, gt, bt), torch.from_numpy(dy))
        for got, w in zip((dx, dg, db), want):
            np.testing.assert_allclose(got, w.numpy(), rtol=1e-4, atol=1e-4)
        g = F.gelu(x, "standard")
        np.testing.assert_allclose(g, torch.nn.functional.gelu(xt).detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        target = np.array([0, 3, -100, 8, 2])
        logp = F.log_softmax(x, "standard")
        loss, count = F.cross_entropy(logp, target, -100, 0.1, "standard")
        self.assertEqual(count, 4)
        lt = torch.nn.functional.cross_entropy(xt, torch.from_numpy(target), ignore_index=-100,
                                               label_smoothing=0.1)
        self.assertAlmostEqual(loss, lt.item(), places=5)
        dlogp = F.cross_entropy_backward(logp, target, 1.0, -100, 0.1, "standard")
        (gx,) = torch.autograd.grad(lt, xt)
        np.testing.assert_allclose(F.log_softmax_backward(x, logp, dlogp, "standard"),
                                   gx.numpy(), rtol=1e-4, atol=1e-6)

    def test_pa_softmax_and_logsumexp_follow_the_spec(self):
        x = self.randn(6, 13, scale=4.0)
        t = arith.mul(x, arith.LOG2E)
        s = np.floor(t.max(axis=1, keepdims=True)).astype(np.float32)
        e = arith.exp2((t - s).astype(np.float32))
        tot = e.astype(np.float64).sum(axis=1, keepdims=True).astype(np.float32)
        want = arith.div(e, np.ascontiguousarray(np.broadcast_to(tot, e.shape)))
        got = F.softmax(x, "pam")
        np.testing.assert_allclose(got, want, rtol=8 * EPS32, atol=0)
        lse_want = arith.div(arith.log2(tot[:, 0]) + s[:, 0], arith.LOG2E)
        np.testing.assert_allclose(F.logsumexp(x, "pam"), lse_want, rtol=8 * EPS32, atol=1e-6)
        # −∞ masks give exactly zero probability
        x[:, 3] = -np.inf
        self.assertTrue((F.softmax(x, "pam")[:, 3] == 0).all())

    def test_pa_layer_norm_follows_the_spec(self):
        x, gam, bet = self.randn(4, 16), self.randn(16), self.randn(16)
        y, mean, rstd = F.layer_norm(x, gam, bet, 1e-5, "pam")
        mu = arith.div(x.astype(np.float64).sum(1).astype(np.float32), 16.0)
        np.testing.assert_allclose(mean, mu, rtol=8 * EPS32, atol=1e-7)
        xc = (x - mean[:, None]).astype(np.float32)
        var = arith.div(arith.mul(xc, xc).astype(np.float64).sum(1).astype(np.float32), 16.0)
        sd = arith.sqrt((var + np.float32(1e-5)).astype(np.float32))
        np.testing.assert_allclose(rstd, sd, rtol=8 * EPS32)
        want = arith.mul(arith.div(xc, np.ascontiguousarray(np.broadcast_to(rstd[:, None],
                                                                            xc.shape))),
                         np.ascontiguousarray(np.broadcast_to(gam, xc.shape))) + bet
        self.assertBitsEqual(y, want, "PA layer norm given its mean and divisor")

    def test_exact_backward_is_the_slope_of_the_pa_function(self):
        """experiments/gradients/quality.py's measure, small: along random
        directions, over steps of 10^-4 of the input's scale, each op's exact
        backward predicts the PA function's central differences (correlation
        and slope near 1), and each approximate backward lies within a small
        angle of the float derivative."""
        sys.path.insert(0, os.path.join(ROOT, "experiments", "gradients"))
        import quality
        for r in quality.measure(self.rng, 200, [1e-4]):
            corr, slope = r["fit"][0]
            if r["backward"] == "exact":
                self.assertGreater(corr, 0.99, r)
                self.assertLess(abs(slope - 1.0), 0.03, r)
            elif r["backward"] == "approx":
                self.assertGreater(r["cos"], 0.99, r)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "gamma has shape"):
            F.layer_norm(self.randn(2, 4), self.randn(3), self.randn(4))
        with self.assertRaisesRegex(ValueError, "target is outside"):
            F.cross_entropy(F.log_softmax(self.randn(2, 3)), [0, 7])
        with self.assertRaisesRegex(ValueError, "does not fit the C API's int"):
            F.cross_entropy(F.log_softmax(self.randn(1, 3)), np.array([2**32 + 1]))
        # empty inputs are fine
        self.assertEqual(F.softmax(np.zeros((0, 3), np.float32)).shape, (0, 3))
        with self.assertRaisesRegex(TypeError, "target must hold integers"):
            F.cross_entropy(F.log_softmax(self.randn(2, 3)), np.array([0.0, 1.0]))


if __name__ == "__main__":
    unittest.main()
