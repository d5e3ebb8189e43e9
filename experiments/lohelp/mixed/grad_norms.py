#!/usr/bin/env python3
"""grad_norms.py — the gradient norms of runs trained with grad_norms=per_tensor,
side by side: the whole gradient's norm at chosen steps, and per tensor group
(embeddings, attention, feed-forward, layer norm, output; encoder and decoder)
the norm's mean over a window of steps, each run against the first (the ratio).

  python3 experiments/lohelp/mixed/grad_norms.py RUN_DIR... [--steps 20,100,...]
      [--window 400:800]

Writes a Markdown report on stdout. Reads RUN_DIR/metrics.jsonl (Python's
json, which reads NaN)."""
import json
import math
import re
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "grad_norm" in d:
                rows[int(d["step"])] = d
    return rows


def group_of(name):
    side = "encoder" if name.startswith("encoder") else "decoder" if name.startswith(
        "decoder") else "other"
    if "embed" in name:
        kind = "embeddings"
    elif "norm" in name:
        kind = "layer norm"
    elif "attn" in name:  # q, k: behind the softmax; v, out: beside it
        kind = ("cross" if "encoder_attn" in name else "self") + "-attention " + (
            "q, k" if ("q_proj" in name or "k_proj" in name) else "v, out")
    elif "fc1" in name or "fc2" in name or "mlp" in name or "ffn" in name:
        kind = "feed-forward"
    elif "output" in name or "head" in name:
        kind = "output"
    else:
        kind = "other"
    return side + " " + kind


def main(argv):
    dirs, steps, window = [], [20, 100, 200, 400, 600, 720], (400, 720)
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--steps":
            steps = [int(s) for s in argv[i + 1].split(",")]
            i += 2
        elif a == "--window":
            lo, hi = argv[i + 1].split(":")
            window = (int(lo), int(hi))
            i += 2
        else:
            dirs.append(a)
            i += 1
    if not dirs:
        sys.exit(__doc__)
    # a run's name: its folder's, with its parent's where two would read alike
    last = [d.rstrip("/").split("/")[-1] for d in dirs]
    label = [("/".join(d.rstrip("/").split("/")[-2:]) if last.count(n) > 1 else n)
             for d, n in zip(dirs, last)]
    runs = [(n, load(d + "/metrics.jsonl")) for n, d in zip(label, dirs)]
    for name, rows in runs:
        if not rows:
            sys.exit("grad_norms.py: %s has no grad_norm lines (train with grad_norms=per_tensor)"
                     % name)
    names = [n for n, _ in runs]
    print("Whole gradient's norm (before clipping) at step:\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for s in steps:
        vals = []
        for _, rows in runs:
            vals.append("%.3g" % rows[s]["grad_norm"] if s in rows else "-")
        print("| %d | %s |" % (s, " | ".join(vals)))
    # per group: RMS over the group's tensors' norms combined (sqrt of the sum
    # of squares), averaged over the window's logged steps
    def groups(rows):
        acc, cnt = {}, {}
        for s, d in rows.items():
            if not (window[0] <= s <= window[1]):
                continue
            sq = {}
            for k, v in d.items():
                if k.startswith("grad_norm/") and isinstance(v, float) and math.isfinite(v):
                    g = group_of(k[len("grad_norm/"):])
                    sq[g] = sq.get(g, 0.0) + v * v
            for g, v in sq.items():
                acc[g] = acc.get(g, 0.0) + math.sqrt(v)
                cnt[g] = cnt.get(g, 0) + 1
        return {g: acc[g] / cnt[g] for g in acc}
    gs = [groups(rows) for _, rows in runs]
    print("\nGradient norm per tensor group, mean over the logged steps %d..%d "
          "(ratio to %s):\n" % (window[0], window[1], names[0]))
    print("| group | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for g in sorted(gs[0]):
        cells = ["%.3g" % gs[0][g]]
        for other in gs[1:]:
            v = other.get(g)
            cells.append("-" if v is None else "%.3g (%.2fx)" % (v, v / gs[0][g]))
        print("| %s | %s |" % (g, " | ".join(cells)))
    # the key projections' biases: a bias of k adds q·b_k to every logit of
    # a query's row, which a shift-invariant softmax ignores: their gradient
    # is zero in float, and measures a softmax derivative's all-ones part
    print("\nKey-projection biases (k_proj.bias), gradient norm over the window: mean and "
          "largest of the tensors\n")
    print("| run | mean | largest |")
    print("|---|---|---|")
    for name, rows in runs:
        acc = {}
        for s, d in rows.items():
            if window[0] <= s <= window[1]:
                for k, v in d.items():
                    if k.endswith("k_proj.bias") and math.isfinite(v):
                        acc.setdefault(k, []).append(v)
        m = [sum(v) / len(v) for v in acc.values()]
        if m:
            print("| %s | %.3g | %.3g |" % (name, sum(m) / len(m), max(m)))
    # the tensors whose norm differs most from the first run's
    print("\nTensors with the largest ratio to %s (mean over the window):\n" % names[0])
    def means(rows):
        acc, cnt = {}, {}
        for s, d in rows.items():
            if window[0] <= s <= window[1]:
                for k, v in d.items():
                    if k.startswith("grad_norm/") and math.isfinite(v):
                        acc[k] = acc.get(k, 0.0) + v
                        cnt[k] = cnt.get(k, 0) + 1
        return {k: acc[k] / cnt[k] for k in acc}
    m0 = means(runs[0][1])
    for (name, rows) in runs[1:]:
        m = means(rows)
        r = sorted(((m[k] / m0[k], k) for k in m0 if k in m and m0[k] > 0), reverse=True)
        print("- %s: highest %s; lowest %s" % (
            name, ", ".join("%s %.2fx" % (k[10:], x) for x, k in r[:4]),
            ", ".join("%s %.2fx" % (k[10:], x) for x, k in r[-4:])))


if __name__ == "__main__":
    main(sys.argv[1:])
