"""Shared by the Python tests: puts python/ on the path, gives each test a
fresh random seed (NOMUL_TEST_SEED to replay one) printed when it fails, and
finds the golden vectors (NOMUL_GOLDEN, else ../shared/vectors)."""
import os
import random
import sys
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402


def golden_path():
    return os.environ.get("NOMUL_GOLDEN") or os.path.join(ROOT, "..", "shared", "vectors",
                                                          "pam_golden.txt")


class SeededCase(unittest.TestCase):
    def setUp(self):
        env = os.environ.get("NOMUL_TEST_SEED")
        self.seed = int(env) if env else random.SystemRandom().randrange(1 << 31)
        self.rng = np.random.default_rng(self.seed)

    def run(self, result=None):
        result = result if result is not None else self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            sys.stderr.write("%s: seed %s (replay with NOMUL_TEST_SEED=%s)\n"
                             % (self.id(), getattr(self, "seed", "?"), getattr(self, "seed", "?")))
        return out

    def randn(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def random_bits(self, n, lo=-30, hi=30):
        """n normal float32 values with exponents in [lo, hi), random signs and mantissas."""
        e = self.rng.integers(lo + 127, hi + 127, n, dtype=np.uint32)
        m = self.rng.integers(0, 1 << 23, n, dtype=np.uint32)
        s = self.rng.integers(0, 2, n, dtype=np.uint32)
        return ((s << 31) | (e << 23) | m).view(np.float32)

    def assertBitsEqual(self, got, want, what=""):
        got = np.ascontiguousarray(got, dtype=np.float32).view(np.uint32)
        want = np.ascontiguousarray(want, dtype=np.float32).view(np.uint32)
        self.assertEqual(got.shape, want.shape, what)
        bad = np.flatnonzero(got.ravel() != want.ravel())
        if bad.size:
            i = bad[0]
            self.fail("%s: %d of %d differ, first at %d: got %08x want %08x"
                      % (what, bad.size, got.size, i, got.ravel()[i], want.ravel()[i]))
