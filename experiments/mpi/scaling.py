"""scaling.py OUT — the table of experiments/mpi/bench.sh's runs in OUT, and
a model of N machines.

Measured, per model: items/s (images or tokens) of 1 process x 2 threads and
2 ranks x 1 thread (the last step line's rate: the epoch's items over its
time so far; the runs stay within their first epoch), the
bytes each rank sends per step and the exchange's time per step (the
trainer's last line). The model: a step of the global batch takes
t1 / N of compute on N machines (t1 = the global batch over one process's
rate; for translation the batch is taken as its max_tokens budget) plus
the gradient exchange, whose rank-ordered sum sends 2 (N - 1) / N x 4 P bytes
per rank (P parameters), the volume of a ring allreduce, at the link's
bandwidth; latency and the overlap of compute with the exchange are left
out."""
import json
import os
import re
import sys

out = sys.argv[1]


def rate(name):
    path = os.path.join(out, name, "metrics.jsonl")
    if not os.path.exists(path):
        return None, None
    vals, key = [], None
    for line in open(path):
        d = json.loads(line)
        for k in ("images_per_s", "tokens_per_s"):
            if k in d:
                key = k
                vals.append(d[k])
    return (vals[-1] if vals else None), key


def summary(name):
    text = open(os.path.join(out, name + ".stderr")).read()
    p = re.search(r"\((\d+) parameters\)", text)
    x = re.search(r"per step ([\d.]+) MB of gradients summed \(([\d.]+) MB sent by each rank\), "
                  r"([\d.]+) ms of ([\d.]+) ms", text)
    return int(p.group(1)) if p else None, x


rows = []
print("%-22s %10s %14s %14s %7s %12s %14s" % ("model", "params", "1 proc x 2 thr",
                                              "2 ranks x 1 thr", "ratio", "MB sent/rank",
                                              "exchange ms"))
for name in ("vit_fmnist_pa", "resnet20_float", "transformer_small_pa"):
    r1, key = rate(name + ".1")
    r2, _ = rate(name + ".2")
    if r1 is None or r2 is None:
        continue
    params, x = summary(name + ".2")
    unit = "img/s" if key == "images_per_s" else "tok/s"
    print("%-22s %10d %8.0f %5s %8.0f %5s %7.2f %12s %14s" % (
        name, params, r1, unit, r2, unit, r2 / r1, x.group(2) if x else "-",
        "%s of %s" % (x.group(3), x.group(4)) if x else "-"))
    # the step of one process: its global batch over its rate
    cfg = json.load(open(os.path.join(out, name + ".1", "config.json")))
    items = cfg["batch_size"] if key == "images_per_s" else cfg["max_tokens"]
    rows.append((name, params, items / r1))

print()
print("model of N machines (compute t1/N + ring-volume exchange 2(N-1)/N x 4P bytes):")
print("%-22s %9s %6s %11s %11s %11s %11s" % ("model", "t1 ms", "N", "10Gbit/s ms",
                                             "speedup", "25Gbit/s ms", "speedup"))
for name, params, t1 in rows:
    for n in (2, 4, 8, 16, 64):
        cells = []
        for gbit in (10, 25):
            comm = 2 * (n - 1) / n * 4 * params * 8 / (gbit * 1e9)
            tn = t1 / n + comm
            cells += [1e3 * tn, t1 / tn]
        print("%-22s %9.1f %6d %11.2f %11.2f %11.2f %11.2f" % (name, 1e3 * t1, n, *cells))
