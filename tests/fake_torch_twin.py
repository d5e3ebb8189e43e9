#!/usr/bin/python3
"""A stand-in for experiments/bench/torch_twin.py in test_cli's bench train
case: the same arguments and last-line JSON, fixed rates (100 images/s, 150
with --channels-last), so that the test sees which rows the benchmark asks
for and that it compares nomul with the faster."""
import json
import sys

args = sys.argv[1:]
model = args[args.index("--model") + 1]
threads = int(args[args.index("--threads") + 1])
cl = "--channels-last" in args
print(json.dumps({"model": model, "threads": threads, "params": 0, "items": "images",
                  "items_per_s": 150.0 if cl else 100.0, "step_ms": 1.0,
                  "peak_rss_mb": 10.0, "channels_last": cl}))
