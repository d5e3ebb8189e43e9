"""nomul.torch: each autograd Function gives bit for bit what the numpy API
gives (forward and backward), the approximate backward of mul/div/exp/log
follows PAM_SPEC.md's formulas through autograd, the errors for other dtypes
and devices, and a tiny model trained a few steps through nomul.torch equals
the same steps written with the numpy API."""
import unittest

import numpy as np
import torch

from util import SeededCase

import nomul.torch as pt
from nomul import OpCfg, arith, gemm
from nomul import functional as F


def T(a, grad=False):
    return torch.from_numpy(np.array(a, dtype=np.float32)).requires_grad_(grad)


class Layers(SeededCase):
    def setUp(self):
        super().setUp()
        torch.manual_seed(self.seed)

    def test_linear_is_gemm(self):
        for approx, offset in ((False, None), (True, 1.0552)):
            lin = pt.Linear(6, 4, approx_bwd=approx, offset=offset)
            x = self.randn(2, 3, 6)
            xt = T(x, True)
            y = lin(xt)
            cfg = OpCfg("pam", approx_bwd=approx, offset=offset)
            W, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
            want = gemm.gemm(x.reshape(6, 6), W, cfg, trans_b=True) + b
            self.assertBitsEqual(y.detach().numpy().reshape(6, 4), want, "Linear forward")
            dy = self.randn(2, 3, 4)
            y.backward(T(dy))
            dx, dw = gemm.gemm_backward(x.reshape(6, 6), W, dy.reshape(6, 4), cfg, trans_b=True)
            self.assertBitsEqual(xt.grad.numpy().reshape(6, 6), dx, "Linear dx")
            self.assertBitsEqual(lin.weight.grad.numpy(), dw, "Linear dW")
            self.assertBitsEqual(lin.bias.grad.numpy(), dy.reshape(6, 4).sum(0), "Linear db")

    def test_conv2d_is_nomul_conv2d(self):
        conv = pt.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=1, groups=2)
        x = self.randn(2, 4, 6, 7)
        xt = T(x, True)
        y = conv(xt)
        W, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
        geo = dict(stride=(1, 2), padding=(1, 1), dilation=(1, 1), groups=2)
        self.assertBitsEqual(y.detach().numpy(), gemm.conv2d(x, W, b, None, **geo), "Conv2d")
        dy = self.randn(*y.shape)
        y.backward(T(dy))
        dx, dw, db = gemm.conv2d_backward(x, W, dy, None, **geo)
        self.assertBitsEqual(xt.grad.numpy(), dx, "Conv2d dx")
        self.assertBitsEqual(conv.weight.grad.numpy(), dw, "Conv2d dW")
        self.assertBitsEqual(conv.bias.grad.numpy(), db, "Conv2d db")

    def test_layer_norm_softmax_bmm(self):
        ln = pt.LayerNorm(8, approx_bwd=True)
        with torch.no_grad():
            ln.weight.copy_(T(self.randn(8)))
        x = self.randn(3, 8)
        xt = T(x, True)
        y = ln(xt)
        cfg = OpCfg("pam", approx_bwd=True)
        g, b = ln.weight.detach().numpy(), ln.bias.detach().numpy()
        want, mean, rstd = F.layer_norm(x, g, b, 1e-5, cfg)
        self.assertBitsEqual(y.detach().numpy(), want, "LayerNorm")
        dy = self.randn(3, 8)
        y.backward(T(dy))
        dx, dg, db = F.layer_norm_backward(x, g, mean, rstd, dy, 1e-5, cfg)
        self.assertBitsEqual(xt.grad.numpy(), dx, "LayerNorm dx")
        self.assertBitsEqual(ln.weight.grad.numpy(), dg, "LayerNorm dgamma")

        # softmax along a middle dimension is the row softmax of the moved axis
        x = self.randn(2, 5, 3)
        s = pt.softmax(T(x), dim=1).numpy()
        want = F.softmax(np.moveaxis(x, 1, -1).copy())
        self.assertBitsEqual(np.moveaxis(s, 1, -1), want, "softmax(dim=1)")
        self.assertBitsEqual(pt.logsumexp(T(x), dim=1).numpy(), F.logsumexp(
            np.moveaxis(x, 1, -1).copy()), "logsumexp(dim=1)")

        a, c = self.randn(2, 3, 4), self.randn(2, 4, 5)
        at, ct = T(a, True), T(c, True)
        out = pt.bmm(at, ct, approx_bwd=True)
        self.assertBitsEqual(out.detach().numpy(), gemm.bmm(a, c), "bmm")
        out.sum().backward()
        da, dc = gemm.bmm_backward(a, c, np.ones((2, 3, 5), np.float32), cfg)
        self.assertBitsEqual(at.grad.numpy(), da, "bmm dA")
        self.assertBitsEqual(pt.matmul(T(a), T(c)).numpy(), gemm.bmm(a, c), "matmul 3-D")

    def test_non_contiguous_inputs_are_copied(self):
        x = self.randn(6, 5)
        w = self.randn(4, 5)
        y1 = pt.linear(T(x.T.copy()).t(), T(w))
        y2 = pt.linear(T(x), T(w))
        self.assertBitsEqual(y1.numpy(), y2.numpy(), "transposed view")

    def test_errors(self):
        x = torch.randn(2, 3)
        with self.assertRaisesRegex(TypeError, "dtype torch.float64; nomul needs torch.float32"):
            pt.mul(x.double(), x.double())
        with self.assertRaisesRegex(TypeError, "on meta; nomul runs on the CPU only"):
            pt.exp(torch.empty(3, device="meta"))
        with self.assertRaisesRegex(ValueError, "last dimension only"):
            pt.layer_norm(torch.randn(2, 3, 4), (3, 4))
        with self.assertRaisesRegex(ValueError, "padding_mode"):
            pt.Conv2d(1, 1, 3, padding_mode="reflect")


class ApproxBackwardThroughAutograd(SeededCase):
    """torch.autograd gives the spec's approximate derivatives."""

    def test_elementwise(self):
        n = 500
        a, b, d = self.random_bits(n, -8, 8), self.random_bits(n, -8, 8), self.random_bits(n)
        at, bt = T(a, True), T(b, True)
        pt.mul(at, bt, approx_bwd=True).backward(T(d))
        self.assertBitsEqual(at.grad.numpy(), arith.mul(d, b), "mul dA")
        self.assertBitsEqual(bt.grad.numpy(), arith.mul(d, a), "mul dB")
        at, bt = T(a, True), T(b, True)
        pt.div(at, bt, approx_bwd=True).backward(T(d))
        self.assertBitsEqual(at.grad.numpy(), arith.div(d, b), "div dA")
        self.assertBitsEqual(bt.grad.numpy(), -arith.div(arith.mul(a, d), arith.mul(b, b)),
                             "div dB")
        xt = T(a, True)
        pt.exp(xt, approx_bwd=True).backward(T(d))
        self.assertBitsEqual(xt.grad.numpy(), arith.mul(arith.exp(a), d), "exp")
        pa = np.abs(a)
        xt = T(pa, True)
        pt.log(xt, approx_bwd=True).backward(T(d))
        self.assertBitsEqual(xt.grad.numpy(), arith.div(d, pa), "log")
        # exact mode: the exact derivative
        at, bt = T(a, True), T(b, True)
        pt.mul(at, bt).backward(T(d))
        self.assertBitsEqual(at.grad.numpy(), arith.mul_grad(a, b, d)[0], "mul exact dA")
        # a broadcast scalar's gradient is summed, as torch.mul's
        at = T(a, True)
        s = torch.tensor(0.75, requires_grad=True)
        pt.mul(at, s).sum().backward()
        want = arith.mul_grad(a, np.full_like(a, 0.75), np.ones_like(a))[1].sum()
        self.assertEqual(s.grad.item(), float(want))


class TinyModel(SeededCase):
    """Three SGD steps of Linear → GELU → Linear → cross-entropy through
    nomul.torch equal the same steps written with the numpy API."""

    def test_training_steps(self):
        torch.manual_seed(self.seed)
        l1 = pt.Linear(8, 16, approx_bwd=True)
        l2 = pt.Linear(16, 5)
        act = pt.GELU()
        params = [l1.weight, l1.bias, l2.weight, l2.bias]
        P = [p.detach().numpy().copy() for p in params]
        c1, c2 = OpCfg("pam", approx_bwd=True), OpCfg("pam")
        lr = np.float32(0.1)
        for step in range(3):
            x = self.randn(12, 8)
            y = self.rng.integers(0, 5, 12)
            for p in params:
                p.grad = None
            loss = pt.cross_entropy(l2(act(l1(T(x)))), torch.from_numpy(y))
            loss.backward()
            with torch.no_grad():  # plain SGD, the same float operations as below
                for p in params:
                    p.sub_(p.grad * torch.tensor(lr))

            # the same step with the numpy API
            h = gemm.gemm(x, P[0], c1, trans_b=True) + P[1]
            g = F.gelu(h, c2)
            z = gemm.gemm(g, P[2], c2, trans_b=True) + P[3]
            logp = F.log_softmax(z, c2)
            want_loss, _ = F.cross_entropy(logp, y, -100, 0.0, c2)
            self.assertEqual(loss.item(), want_loss, "loss at step %d" % step)
            dlogp = F.cross_entropy_backward(logp, y, 1.0, -100, 0.0, c2)
            dz = F.log_softmax_backward(z, logp, dlogp, c2)
            dg, dW2 = gemm.gemm_backward(g, P[2], dz, c2, trans_b=True)
            dh = F.gelu_backward(h, dg, c2)
            _, dW1 = gemm.gemm_backward(x, P[0], dh, c1, trans_b=True)
            grads = [dW1, dh.sum(0), dW2, dz.sum(0)]
            for i, (p, gr) in enumerate(zip(P, grads)):
                p -= lr * gr
                self.assertBitsEqual(params[i].detach().numpy(), p,
                                     "parameter %d after step %d" % (i, step))


if __name__ == "__main__":
    unittest.main()
