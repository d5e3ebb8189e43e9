"""nomul.arith bit for bit: against the golden vectors of PAM_SPEC.md, against
the C scalar functions (nomul_vector_eval_scalar) on fresh random inputs, and
the approximate derivatives against the spec's formulas; the exact ones
against finite differences of the piecewise affine functions."""
import ctypes
import unittest

import numpy as np

import util
from util import SeededCase

import nomul
from nomul import arith
from nomul._lib import lib

# golden / nomul_vector op name -> (inputs, outputs) through the Python API
API = {
    "mul": lambda a, b: (arith.mul(a, b),),
    "mul_off": lambda a, b, c: (arith.mul(a, b, offset=float(c[0])),),
    "div": lambda a, b: (arith.div(a, b),),
    "mul_grad": lambda a, b, d: arith.mul_grad(a, b, d),
    "mul_grad_approx": lambda a, b, d: arith.mul_grad(a, b, d, approx=True),
    "div_grad": lambda a, b, d: arith.div_grad(a, b, d),
    "div_grad_approx": lambda a, b, d: arith.div_grad(a, b, d, approx=True),
    "mul_off_grad": lambda a, b, c, d: arith.mul_grad(a, b, d, offset=float(c[0])),
    "exp2": lambda x: (arith.exp2(x),),
    "exp": lambda x: (arith.exp(x),),
    "log2": lambda x: (arith.log2(x),),
    "log": lambda x: (arith.log(x),),
    "sqrt": lambda x: (arith.sqrt(x),),
    "pow": lambda a, p: (arith.pow(a, p),),
    "exp2_grad": lambda y, d: (arith.exp2_grad(y, d),),
    "log2_grad": lambda x, d: (arith.log2_grad(x, d),),
    "exp_grad": lambda x, d: (arith.exp_grad(x, d),),
    "exp_grad_approx": lambda x, d: (arith.exp_grad(x, d, approx=True),),
    "log_grad": lambda x, d: (arith.log_grad(x, d),),
    "log_grad_approx": lambda x, d: (arith.log_grad(x, d, approx=True),),
    "sqrt_grad": lambda x, d: (arith.sqrt_grad(x, d),),
    "sqrt_grad_approx": lambda x, d: (arith.sqrt_grad(x, d, approx=True),),
    "pow_grad": lambda a, p, d: arith.pow_grad(a, p, d),
    "pow_grad_approx": lambda a, p, d: arith.pow_grad(a, p, d, approx=True),
}

# offsets are one scalar per call in the API: the third input is shared
SHARED_THIRD = {"mul_off", "mul_off_grad"}

lib.nomul_vector_op_count.restype = ctypes.c_int
lib.nomul_vector_op_name.restype = ctypes.c_char_p
lib.nomul_vector_op_name.argtypes = [ctypes.c_int]
lib.nomul_vector_op_inputs.argtypes = [ctypes.c_int]
lib.nomul_vector_op_outputs.argtypes = [ctypes.c_int]
lib.nomul_vector_eval_scalar.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def c_scalar(op, ins):
    """The C scalar function of op on each case: ins is a list of arrays."""
    nout = lib.nomul_vector_op_outputs(op)
    n = ins[0].size
    outs = [np.empty(n, np.float32) for _ in range(nout)]
    i_buf = (ctypes.c_uint32 * 4)()
    o_buf = (ctypes.c_uint32 * 2)()
    bits = [x.view(np.uint32) for x in ins]
    for j in range(n):
        for k, b in enumerate(bits):
            i_buf[k] = int(b[j])
        lib.nomul_vector_eval_scalar(op, i_buf, o_buf)
        for k in range(nout):
            outs[k].view(np.uint32)[j] = o_buf[k]
    return outs


class GoldenVectors(unittest.TestCase):
    def test_golden(self):
        path = util.golden_path()
        cases = {}
        try:
            f = open(path)
        except OSError as e:
            self.fail("cannot open the golden vectors (set NOMUL_GOLDEN): %s" % e)
        with f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                lhs, rhs = line.split("->")
                words = lhs.split()
                cases.setdefault(words[0], []).append(
                    ([int(w, 16) for w in words[1:]], [int(w, 16) for w in rhs.split()]))
        self.assertGreater(len(cases), 5, path)
        total = 0
        for name, rows in cases.items():
            self.assertIn(name, API, "golden op %s has no Python entry point" % name)
            if name in SHARED_THIRD:
                groups = {}
                for r in rows:
                    groups.setdefault(r[0][2], []).append(r)
                batches = list(groups.values())
            else:
                batches = [rows]
            for batch in batches:
                ins = [np.array([r[0][k] for r in batch], np.uint32).view(np.float32)
                       for k in range(len(batch[0][0]))]
                want = [np.array([r[1][k] for r in batch], np.uint32).view(np.float32)
                        for k in range(len(batch[0][1]))]
                got = API[name](*ins)
                for k, (g, w) in enumerate(zip(got, want)):
                    ok = g.view(np.uint32) == w.view(np.uint32)
                    if not ok.all():
                        j = int(np.flatnonzero(~ok)[0])
                        self.fail("%s output %d: %d of %d differ; first: inputs %s got %08x "
                                  "want %08x" % (name, k, (~ok).sum(), ok.size,
                                                 [hex(r) for r in batch[j][0]],
                                                 g.view(np.uint32)[j], w.view(np.uint32)[j]))
                total += len(batch)
        self.assertGreater(total, 1000)


class AgainstC(SeededCase):
    def test_every_op_matches_c_scalar(self):
        n = 3000
        for op in range(lib.nomul_vector_op_count()):
            name = lib.nomul_vector_op_name(op).decode()
            self.assertIn(name, API, "C op %s has no Python entry point" % name)
            nin = lib.nomul_vector_op_inputs(op)
            ins = [self.random_bits(n) for _ in range(nin)]
            # specials mixed in: zeros, infinities, NaN, subnormals
            specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000123],
                                np.uint32).view(np.float32)
            for x in ins:
                x[:specials.size * 4] = self.rng.choice(specials, specials.size * 4)
                self.rng.shuffle(x)
            if name in ("pow", "pow_grad", "pow_grad_approx", "sqrt", "sqrt_grad",
                        "sqrt_grad_approx", "log", "log_grad", "log_grad_approx"):
                ins[0] = np.abs(ins[0])
            if name in ("pow", "pow_grad", "pow_grad_approx", "exp", "exp2", "exp_grad",
                        "exp2_grad", "exp_grad_approx"):
                k = 1 if name.startswith("pow") else 0
                ins[k] = self.random_bits(n, -8, 5)
            if name in SHARED_THIRD:
                ins[2][:] = np.float32(1.0552)
            want = c_scalar(op, ins)
            got = API[name](*ins)
            for k, (g, w) in enumerate(zip(got, want)):
                self.assertBitsEqual(g, w, "%s output %d" % (name, k))

    def test_scalar_operands_and_out(self):
        a = self.randn(7, 3)
        self.assertBitsEqual(arith.mul(a, 0.75), arith.mul(a, np.full_like(a, 0.75)), "mul_vs")
        self.assertBitsEqual(arith.div(a, 3.0), arith.div(a, np.full_like(a, 3.0)), "div_vs")
        self.assertBitsEqual(arith.div(2.0, a), arith.div(np.full_like(a, 2.0), a), "div_sv")
        self.assertBitsEqual(arith.pow(np.abs(a), 1.5), arith.pow(np.abs(a), np.full_like(a, 1.5)),
                             "pow_vs")
        self.assertBitsEqual(arith.mul(a, 0.5, offset=1.0552),
                             arith.mul(a, np.full_like(a, 0.5), offset=1.0552), "mul_off_vs")
        out = np.empty_like(a)
        self.assertIs(arith.mul(a, a, out=out), out)
        # a non-contiguous input is copied, with the same result
        t = self.randn(3, 7).T
        self.assertBitsEqual(arith.exp(t), arith.exp(np.ascontiguousarray(t)), "strided")

    def test_errors(self):
        a = self.randn(4)
        with self.assertRaisesRegex(TypeError, "a must have dtype float32, got float64"):
            arith.mul(a.astype(np.float64), a)
        with self.assertRaisesRegex(TypeError, "numpy.ndarray"):
            arith.mul([1.0, 2.0], a)
        with self.assertRaisesRegex(ValueError, "a has shape \\(4,\\) but b has shape \\(5,\\)"):
            arith.mul(a, self.randn(5))
        with self.assertRaisesRegex(ValueError, "out has shape"):
            arith.exp(a, out=np.empty(3, np.float32))
        with self.assertRaisesRegex(ValueError, "C-contiguous"):
            arith.exp(a, out=np.empty(8, np.float32)[::2])


class ApproxFormulas(SeededCase):
    """approx_bwd against PAM_SPEC.md's formulas, composed from the forward ops."""

    def test_mul_div_exp_log(self):
        n = 2000
        a, b, d = self.random_bits(n), self.random_bits(n), self.random_bits(n)
        da, db = arith.mul_grad(a, b, d, approx=True)
        self.assertBitsEqual(da, arith.mul(d, b), "PAM dA = PAM(dC, B)")
        self.assertBitsEqual(db, arith.mul(d, a), "PAM dB = PAM(dC, A)")
        da, db = arith.mul_grad(a, b, d, approx=True, offset=1.0552)
        self.assertBitsEqual(da, arith.mul(d, b, offset=1.0552), "PAM offset dA")
        da, db = arith.div_grad(a, b, d, approx=True)
        self.assertBitsEqual(da, arith.div(d, b), "PAD dA = PAD(dC, B)")
        self.assertBitsEqual(db, -arith.div(arith.mul(a, d), arith.mul(b, b)),
                             "PAD dB = -PAD(PAM(A, dC), PAM(B, B))")
        x = self.random_bits(n, -6, 4)
        self.assertBitsEqual(arith.exp_grad(x, d, approx=True), arith.mul(arith.exp(x), d),
                             "pa_exp: PAM(y, dy)")
        xp = np.abs(a)
        self.assertBitsEqual(arith.log_grad(xp, d, approx=True), arith.div(d, xp),
                             "pa_log: PAD(dy, x)")


class ExactByDifferences(SeededCase):
    """The exact derivative is the slope of the piecewise affine function:
    a step of a few ulps inside one piece changes PAM by exactly slope·step."""

    def test_pam_slope(self):
        n = 4000
        a, b = self.random_bits(n, -10, 10), self.random_bits(n, -10, 10)
        one = np.ones(n, np.float32)
        da, db = arith.mul_grad(a, b, one)
        step_bits = 16
        a2 = (a.view(np.uint32) + step_bits).view(np.float32)
        h = a2.astype(np.float64) - a.astype(np.float64)
        fd = (arith.mul(a2, b).astype(np.float64) - arith.mul(a, b).astype(np.float64)) / h
        agree = fd == da.astype(np.float64)
        # only steps that cross a breakpoint (M_a + M_b = 1, or a binade) disagree
        self.assertGreater(agree.mean(), 0.999, "exact ∂PAM/∂a vs difference quotient")


if __name__ == "__main__":
    unittest.main()
