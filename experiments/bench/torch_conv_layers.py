#!/usr/bin/env python3
"""PyTorch's time for ResNet20's 3x3 convolution layers, the twin of build/conv_pass_bench.

One layer at a time, batch 64, input a ReLU's output (about half zeros), no bias, PyTorch's
channels_last format (its faster one on this CPU, as in torch_twin.py); the forward alone and
the forward plus the backward (dX and dW), each the best of --reps calls after three warm-up
calls; the backward's time is their difference. With --threads 1 and the same core
(`taskset -c 0`), its figures stand beside `NOMUL_NUM_THREADS=1 taskset -c 0
build/conv_pass_bench CIN COUT HW 3 STRIDE PASS 0` (float: PASS 0 forward, 1 dX, 2 dW):

    taskset -c 0 /usr/bin/python3 experiments/bench/torch_conv_layers.py --threads 1

Prints one line per layer: channels, size, stride, forward ms, forward + backward ms,
backward ms.
"""
import argparse
import sys
import time

LAYERS = [(16, 16, 28, 1), (16, 32, 28, 2), (32, 32, 14, 1), (32, 64, 14, 2), (64, 64, 7, 1)]


def best_ms(f, reps):
    for _ in range(3):
        f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--reps", type=int, default=20, help="timed calls per figure (default 20)")
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args(argv)
    if a.threads < 1 or a.reps < 1 or a.batch < 1:
        p.error("--threads, --reps and --batch must be at least 1")
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    cl = torch.channels_last
    for cin, cout, hw, stride in LAYERS:
        conv = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False).to(memory_format=cl)
        x = torch.relu(torch.randn(a.batch, cin, hw, hw)).contiguous(memory_format=cl)
        x.requires_grad_()
        dy = torch.randn_like(conv(x))

        def forward():
            with torch.no_grad():
                conv(x)

        def both():
            x.grad = None
            conv.weight.grad = None
            conv(x).backward(dy)

        f, fb = best_ms(forward, a.reps), best_ms(both, a.reps)
        print("%d -> %d %dx%d k3 s%d: forward %.3f ms, forward + backward %.3f ms, "
              "backward %.3f ms" % (cin, cout, hw, hw, stride, f, fb, fb - f))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
