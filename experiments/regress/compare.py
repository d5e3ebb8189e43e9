#!/usr/bin/env python3
"""compare.py BEFORE AFTER — the outputs of two `run.sh` folders must agree bit
for bit: every metric of every line (as float32; timings skipped), every
tensor of every final checkpoint (by name, dtype, shape and bytes), and the
outputs of eval, translate and audit. Prints each difference; exit 1 if any."""
import json, os, re, struct, sys, hashlib

TIMING = re.compile(r"(_per_s|seconds)$")


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0] if isinstance(v, float) else v


def metrics(path):
    out = []
    for line in open(path):
        rec = json.loads(line)
        out.append({k: f32(v) for k, v in rec.items() if not TIMING.search(k)})
    return out


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], tuple(t["shape"]), hashlib.sha256(data[b:e]).hexdigest())
    return out


def text(path):
    # timings, rates and the run folder's own path vary; everything else must not
    s = open(path, errors="replace").read().replace(os.path.dirname(path), "OUT")
    s = re.sub(r"^[0-9]+ sentences in [0-9.]+ s: [0-9.]+ sentences/s\n", "", s, flags=re.M)  # translate's speed line
    s = re.sub(r"seconds [0-9.]+", "seconds T", s)
    s = re.sub(r"[0-9.]+ (sentences|images|tokens)/s", r"R \1/s", s)
    return s


def main(a, b):
    bad = 0
    for name in sorted(os.listdir(a)):
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if os.path.isdir(pa):
            ma, mb = metrics(os.path.join(pa, "metrics.jsonl")), metrics(os.path.join(pb, "metrics.jsonl"))
            if ma != mb:
                bad += 1
                for i, (x, y) in enumerate(zip(ma, mb)):
                    if x != y:
                        print(f"{name}: metrics line {i + 1} differs:\n  {x}\n  {y}")
                        break
                else:
                    print(f"{name}: metrics have {len(ma)} vs {len(mb)} lines")
            ta = tensors(os.path.join(pa, "checkpoint_last.safetensors"))
            tb = tensors(os.path.join(pb, "checkpoint_last.safetensors"))
            diff = [k for k in sorted(set(ta) | set(tb)) if ta.get(k) != tb.get(k)]
            if diff:
                bad += 1
                print(f"{name}: checkpoint tensors differ: {', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}")
            print(f"{name}: {len(ma)} metric lines, {len(ta)} tensors", "ok" if not diff and ma == mb else "DIFFER")
        elif name.endswith(".stdout") and not os.path.isdir(pa[:-7]):
            if text(pa) != text(pb):
                bad += 1
                print(f"{name}: output differs")
            else:
                print(f"{name}: ok")
    print("same results" if bad == 0 else f"{bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
