"""experiments/bench/torch_twin.py, the PyTorch twin of nomul's training
benchmark: a 3-step run prints its JSON line with nomul's parameter count
(read from the header of `nomul train`, the CLI beside NOMUL_LIB), and a
count that differs is refused with both numbers and exit status 2."""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

from util import ROOT

TWIN = os.path.join(ROOT, "experiments", "bench", "torch_twin.py")
NOMUL = os.path.join(os.path.dirname(os.environ.get("NOMUL_LIB", os.path.join(ROOT, "build",
                                                                              "libnomul.so"))),
                     "nomul")


def nomul_count(model):
    """The trainable parameters in the header line of a 1-step nomul train run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([NOMUL, "train", "--progress", "lines", "--set", "model=" + model,
                              "--set", "linear_cfg=standard", "--set", "steps=1",
                              "--set", "warmup_steps=0", "--set", "data.train_limit=64",
                              "--set", "data.test_limit=1", "--set", "audit=false",
                              "--set", "out_dir=" + tmp],
                             capture_output=True, text=True, timeout=120)
    m = re.search(r"nomul train: %s \((\d+) parameters\)" % model, out.stdout + out.stderr)
    if out.returncode or not m:
        raise AssertionError("nomul train failed: %s" % (out.stdout + out.stderr)[-500:])
    return int(m.group(1))


def twin(*args):
    return subprocess.run([sys.executable, TWIN] + list(args), capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))


class TorchTwin(unittest.TestCase):
    def test_vit_three_steps(self):
        want = nomul_count("vit_fmnist")
        r = twin("--model", "vit_fmnist", "--threads", "1", "--steps", "3", "--warmup", "1",
                 "--expect-params", str(want))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(set(got), {"model", "threads", "params", "items", "items_per_s",
                                    "step_ms", "peak_rss_mb", "channels_last"})
        self.assertEqual((got["model"], got["threads"], got["items"]), ("vit_fmnist", 1, "images"))
        self.assertIs(got["channels_last"], False)
        self.assertEqual(got["params"], want)
        self.assertGreater(got["items_per_s"], 0)
        # 3 steps of 64 images: the rate and the step time describe the same wall time
        self.assertAlmostEqual(got["items_per_s"] * got["step_ms"] / 1000.0, 64.0, places=6)
        self.assertGreater(got["peak_rss_mb"], 10)

    def test_resnet_channels_last_step(self):
        want = nomul_count("resnet20")
        r = twin("--model", "resnet20", "--threads", "1", "--steps", "1", "--warmup", "0",
                 "--expect-params", str(want), "--channels-last")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((got["model"], got["params"], got["channels_last"]),
                         ("resnet20", want, True))
        self.assertGreater(got["items_per_s"], 0)

    def test_count_mismatch_is_refused(self):
        r = twin("--model", "vit_fmnist", "--threads", "1", "--steps", "1", "--expect-params", "7")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertRegex(r.stderr, r"twin has \d+ trainable parameters, nomul's has 7")

    def test_usage_errors_exit_2(self):
        for args in (["--model", "vit_fmnist", "--threads", "0"],
                     ["--model", "nope", "--threads", "1"],
                     ["--model", "vit_fmnist", "--threads", "1", "--channels-last"]):
            r = twin(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("torch_twin.py", r.stderr)


if __name__ == "__main__":
    unittest.main()
