#!/usr/bin/python3
"""torch_twin.py — the PyTorch twin of nomul's training benchmark (issue 14).

Trains, for a few steps, a PyTorch model that is layer for layer the same as
nomul's model of that name (same layers, sizes and trainable parameter count,
checked against nomul's own count), with the same optimizer (AdamW: the
recipe's lr, betas and weight decay, decay on the tensors nomul decays), the
same loss (cross-entropy, label smoothing 0.1) and the same batches (64
Fashion-MNIST images kept as uint8 and converted per batch; translation
batches of up to max_tokens tokens as nomul's nomul_token_batches makes them),
in float32, and prints its throughput as one JSON object on the last line of
stdout:

  {"model": M, "threads": N, "params": P, "items": "images"|"tokens",
   "items_per_s": R, "step_ms": S, "peak_rss_mb": MB, "channels_last": B}

--channels-last (the convolutional models) keeps the model's weights and the
batches in PyTorch's channels_last memory format (NHWC), which its CPU
convolutions (oneDNN) run faster than the default NCHW: measured here on
ResNet20 at 2 threads, about 1,000-1,150 against 725-780 images/s. The
benchmark runs both and compares nomul with the faster.

items_per_s counts the items of the timed steps (images, or target tokens
without padding as nomul's translation rate counts them: every target token
and its </s>) over their wall time, the steps after the warmup. Errors: a
message on stderr and exit status 2.

  /usr/bin/python3 experiments/bench/torch_twin.py --model vit_fmnist --threads 1 --steps 50

nomul's parameter count comes from --expect-params N (the benchmark passes
it), else from the header line of `nomul train` (--nomul BIN, by default the
repository's build/nomul), stopped as soon as it has printed it.
"""
import argparse
import gzip
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FMNIST = "/usr/share/datasets/fashion-mnist"
DING = os.path.join(ROOT, "data", "ding-de-en")

# nomul's sizes (src/models/vit.c, cnn.c, transformer.c) and the recipes'
# optimizer settings (experiments/fmnist/vit.json, resnet20.json: nomul's
# defaults; experiments/ding/transformer.json for translation).
VIT = {"vit_fmnist": dict(patch=7, dim=64, depth=4, heads=4, mlp=128)}
RESNET = {"resnet20": 3}
SEQ2SEQ = {  # dim, ffn, heads, encoder layers, decoder layers, dropout
    "transformer_tiny": (64, 128, 4, 2, 2, 0.1),
    "transformer_small": (256, 512, 4, 3, 3, 0.2),
    "transformer_mini": (128, 512, 4, 3, 3, 0.1),  # experiments/lohelp's size
    "transformer_iwslt_de_en": (512, 1024, 4, 6, 6, 0.3),
}
IMAGE_OPT = dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
TEXT_OPT = dict(lr=5e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=1e-4)
MEAN, STD = 0.2860, 0.3530  # nomul's aug.mean / aug.std for Fashion-MNIST
BOS, PAD, EOS, UNK = 0, 1, 2, 3  # fairseq's dictionary
CLASSES = 10  # nomul's data.classes


class Failure(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True,
                   choices=sorted(list(VIT) + list(RESNET) + list(SEQ2SEQ)))
    p.add_argument("--threads", type=int, required=True, help="torch.set_num_threads")
    p.add_argument("--steps", type=int, default=50, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    p.add_argument("--batch", type=int, default=64, help="images per batch (image models)")
    p.add_argument("--max-tokens", type=int, default=4096,
                   help="tokens per batch (translation), as nomul's max_tokens")
    p.add_argument("--data", help="Fashion-MNIST's folder (*-idx?-ubyte.gz; default %s), or the "
                   "BPE'd corpus (train.bpe.de/en, dict.de.txt/dict.en.txt; default %s)"
                   % (FMNIST, DING))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--channels-last", action="store_true",
                   help="the convolutional models' weights and batches in channels_last "
                   "(NHWC) memory format")
    p.add_argument("--expect-params", type=int, help="nomul's trainable parameter count")
    p.add_argument("--nomul", default=os.path.join(ROOT, "build", "nomul"),
                   help="the nomul binary asked for its count when --expect-params is not given")
    a = p.parse_args(argv)
    for key in ("threads", "steps", "batch", "max_tokens"):
        if getattr(a, key) < 1:
            p.error("--%s must be at least 1" % key.replace("_", "-"))
    if a.warmup < 0:
        p.error("--warmup must be at least 0")
    if a.channels_last and a.model not in RESNET:
        p.error("--channels-last applies to the convolutional models (%s), not %s"
                % (", ".join(sorted(RESNET)), a.model))
    return a


# ---- nomul's count ---------------------------------------------------------------------

def nomul_params(a, data):
    """The trainable parameter count in nomul train's header line, the run
    stopped (killed) as soon as it is printed."""
    if not os.access(a.nomul, os.X_OK):
        raise Failure("cannot check the parameter count against nomul's: no nomul binary at '%s' "
                      "(build it with make, or pass --nomul BIN or --expect-params N)" % a.nomul)
    with tempfile.TemporaryDirectory(prefix="torch_twin.") as tmp:
        sets = ["model=" + a.model, "steps=1", "warmup_steps=0", "out_dir=" + tmp,
                "data.test_limit=1", "eval_batch_size=1"]
        if a.model in SEQ2SEQ:
            src, tgt = (os.path.join(data, "train.bpe." + s) for s in ("de", "en"))
            sets += ["task=translation", "data.src_dict=" + os.path.join(data, "dict.de.txt"),
                     "data.tgt_dict=" + os.path.join(data, "dict.en.txt"), "data.train_limit=1"]
            for split in ("train", "valid", "test"):
                sets += ["data.%s_src=%s" % (split, src), "data.%s_tgt=%s" % (split, tgt)]
        else:
            sets += ["data.train_limit=%d" % a.batch, "batch_size=%d" % a.batch]
            for split, stem in (("train", "train"), ("test", "t10k")):
                sets += ["data.%s=%s/%s-images-idx3-ubyte.gz" % (split, data, stem),
                         "data.%s_labels=%s/%s-labels-idx1-ubyte.gz" % (split, data, stem)]
        cmd = [a.nomul, "train", "--progress", "lines"]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
        count, last = None, ""
        try:
            for line in proc.stdout:
                last = line.strip() or last
                m = re.match(r"nomul train: \S+ \((\d+) parameters\)", line)
                if m:
                    count = int(m.group(1))
                    break
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
    if count is None:
        raise Failure("'%s' printed no parameter count: %s" % (" ".join(cmd), last))
    return count


# ---- data ------------------------------------------------------------------------------

def read_idx(path, ndim):
    """An IDX file (gzip'd or not) of unsigned bytes as a numpy array."""
    import numpy as np
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = bytearray(f.read())  # writable, for torch.from_numpy
    except OSError as e:
        raise Failure("cannot read '%s': %s" % (path, e))
    if len(raw) < 4 + 4 * ndim or raw[:2] != b"\0\0" or raw[2] != 8 or raw[3] != ndim:
        raise Failure("'%s' is not an IDX file of %d-dimensional unsigned bytes" % (path, ndim))
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise Failure("'%s' holds %d bytes of data, its header says %s" % (path, len(body), shape))
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def read_dict(path):
    """fairseq's dict.txt: <s> <pad> </s> <unk>, then one 'TOKEN COUNT' per line."""
    ids = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK}
    n = 4
    try:
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                parts = line.rstrip().rsplit(" ", 1)
                overwrite = len(parts) == 2 and parts[1] == "#fairseq:overwrite"
                if overwrite:
                    parts = parts[0].rsplit(" ", 1)
                if len(parts) != 2 or not parts[1].isdigit():
                    raise Failure("%s:%d: not 'TOKEN COUNT' (fairseq's dict.txt)" % (path, no))
                if parts[0] in ids and not overwrite:
                    raise Failure("%s:%d: the token '%s' again" % (path, no, parts[0]))
                ids[parts[0]] = n
                n += 1
    except (OSError, UnicodeDecodeError) as e:
        raise Failure("cannot read '%s': %s" % (path, e))
    return ids, n


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise Failure("cannot read '%s': %s" % (path, e))


def token_batches(src_len, tgt_len, max_tokens):
    """nomul_token_batches (src/text/batch.c): pairs ordered by target, then
    source length, then index; a batch grows while (count + 1) · longest stays
    within max_tokens. Lists of pair indices."""
    order = sorted(range(len(src_len)), key=lambda i: (tgt_len[i], src_len[i], i))
    batches, cur, longest = [], [], 0
    for i in order:
        longest_i = max(src_len[i], tgt_len[i])
        if longest_i > max_tokens:
            raise Failure("sentence pair %d has %d tokens, more than --max-tokens %d"
                          % (i + 1, longest_i, max_tokens))
        nl = max(longest, longest_i)
        if cur and nl * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, nl = [], longest_i
        cur.append(i)
        longest = nl
    if cur:
        batches.append(cur)
    return batches


# ---- models ----------------------------------------------------------------------------

def build_vit(torch, nn, c, classes, channels=1, image=28):
    d, t = c["dim"], (image // c["patch"]) ** 2 + 1

    class Block(nn.Module):
        """Pre-norm: x += attn(LN(x)); x += fc2(GELU(fc1(LN(x))))."""
        def __init__(self):
            super().__init__()
            self.norm1 = nn.LayerNorm(d, eps=1e-6)
            self.attn = nn.MultiheadAttention(d, c["heads"], batch_first=True)
            self.norm2 = nn.LayerNorm(d, eps=1e-6)
            self.fc1, self.act, self.fc2 = nn.Linear(d, c["mlp"]), nn.GELU(), nn.Linear(c["mlp"], d)

        def forward(self, x):
            a = self.norm1(x)
            x = x + self.attn(a, a, a, need_weights=False)[0]
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(channels, d, c["patch"], stride=c["patch"])
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            self.pos_embed = nn.Parameter(torch.zeros(1, t, d))
            nn.init.trunc_normal_(self.cls_token, std=0.02, a=-0.04, b=0.04)
            nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-0.04, b=0.04)
            self.blocks = nn.Sequential(*[Block() for _ in range(c["depth"])])
            self.norm = nn.LayerNorm(d, eps=1e-6)
            self.head = nn.Linear(d, classes)
            for m in self.modules():  # timm: matrices N(0, 0.02²) truncated, zero biases
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.MultiheadAttention):
                    nn.init.trunc_normal_(m.in_proj_weight, std=0.02, a=-0.04, b=0.04)
                    nn.init.zeros_(m.in_proj_bias)

        def forward(self, x):
            h = self.patch_embed(x).flatten(2).transpose(1, 2)  # (b, t, d)
            h = torch.cat((self.cls_token.expand(h.shape[0], -1, -1), h), 1) + self.pos_embed
            return self.head(self.norm(self.blocks(h))[:, 0])

    return ViT()


def build_resnet(nn, depth, classes, channels=1):
    """Pre-activation ResNet (cnn.c): BN-ReLU-conv twice per block, a 1×1
    projection of the pre-activated input where the shape changes."""
    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.bn1, self.relu = nn.BatchNorm2d(cin), nn.ReLU()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))
                             if stride != 1 or cin != cout else None)

        def forward(self, h):
            a = self.relu(self.bn1(h))
            r = self.conv2(self.relu(self.bn2(self.conv1(a))))
            return r + (self.shortcut(a) if self.shortcut is not None else h)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, 16, 3, 1, 1, bias=False)
            layers, c = [], 16
            for s in range(3):
                out = 16 << s
                for b in range(depth):
                    layers.append(Block(c, out, 2 if s > 0 and b == 0 else 1))
                    c = out
            self.layers = nn.Sequential(*layers)
            self.bn, self.relu = nn.BatchNorm2d(c), nn.ReLU()
            self.linear = nn.Linear(c, classes)

        def forward(self, x):
            h = self.relu(self.bn(self.layers(self.conv1(x))))
            return self.linear(h.mean((2, 3)))

    return ResNet()


def build_seq2seq(torch, nn, size, vocab_src, vocab_tgt):
    """fairseq's post-norm transformer (transformer.c): √d-scaled embeddings
    plus sinusoidal positions (from 0), dropout after the embeddings and each
    sublayer, ReLU FFN, the decoder's table as the output projection."""
    d, ffn, heads, n_enc, n_dec, p = size
    F = torch.nn.functional

    def attention():
        m = nn.MultiheadAttention(d, heads, batch_first=True)
        nn.init.xavier_uniform_(m.in_proj_weight)  # per q, k, v matrix: bound √(6 / 2d) either way
        nn.init.zeros_(m.in_proj_bias)
        nn.init.xavier_uniform_(m.out_proj.weight)
        nn.init.zeros_(m.out_proj.bias)
        return m

    def linear(i, o):
        m = nn.Linear(i, o)
        nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
        return m

    class EncLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = attention()
            self.self_attn_layer_norm = nn.LayerNorm(d)
            self.fc1, self.fc2 = linear(d, ffn), linear(ffn, d)
            self.final_layer_norm = nn.LayerNorm(d)

        def forward(self, h, pad):
            a = self.self_attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
            h = self.self_attn_layer_norm(h + F.dropout(a, p, self.training))
            f = self.fc2(F.relu(self.fc1(h)))
            return self.final_layer_norm(h + F.dropout(f, p, self.training))

    class DecLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = attention()
            self.self_attn_layer_norm = nn.LayerNorm(d)
            self.encoder_attn = attention()
            self.encoder_attn_layer_norm = nn.LayerNorm(d)
            self.fc1, self.fc2 = linear(d, ffn), linear(ffn, d)
            self.final_layer_norm = nn.LayerNorm(d)

        def forward(self, h, enc, pad, causal):
            a = self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0]
            h = self.self_attn_layer_norm(h + F.dropout(a, p, self.training))
            a = self.encoder_attn(h, enc, enc, key_padding_mask=pad, need_weights=False)[0]
            h = self.encoder_attn_layer_norm(h + F.dropout(a, p, self.training))
            f = self.fc2(F.relu(self.fc1(h)))
            return self.final_layer_norm(h + F.dropout(f, p, self.training))

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc_embed = nn.Embedding(vocab_src, d, padding_idx=PAD)
            self.dec_embed = nn.Embedding(vocab_tgt, d, padding_idx=PAD)
            for e in (self.enc_embed, self.dec_embed):
                nn.init.normal_(e.weight, 0.0, d ** -0.5)
                with torch.no_grad():
                    e.weight[PAD].zero_()
            self.encoder = nn.ModuleList([EncLayer() for _ in range(n_enc)])
            self.decoder = nn.ModuleList([DecLayer() for _ in range(n_dec)])
            half = d // 2  # nomul_sinusoidal_positions
            freq = torch.exp(-math.log(10000.0) / max(half - 1, 1) * torch.arange(half,
                                                                                  dtype=torch.float64))
            ang = torch.arange(1024, dtype=torch.float64)[:, None] * freq[None]
            self.register_buffer("pos", torch.cat((ang.sin(), ang.cos()), 1).float(),
                                 persistent=False)

        def embed(self, table, ids):
            e = table(ids) * math.sqrt(d) + self.pos[:ids.shape[1]]
            return F.dropout(e, p, self.training)

        def forward(self, src, tin):
            pad = src.eq(PAD)
            h = self.embed(self.enc_embed, src)
            for layer in self.encoder:
                h = layer(h, pad)
            t = tin.shape[1]
            causal = torch.full((t, t), float("-inf")).triu_(1)
            y = self.embed(self.dec_embed, tin)
            for layer in self.decoder:
                y = layer(y, h, pad, causal)
            return F.linear(y, self.dec_embed.weight)  # (b, t, vocab_tgt)

    return Seq2Seq()


def decay_groups(model, wd):
    """Weight decay on the tensors nomul decays (p->decay): matrices, conv
    kernels and embedding tables; not biases, norms, the class token or the
    positions."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and name not in ("cls_token", "pos_embed") else rest).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


# ---- the run ---------------------------------------------------------------------------

def image_task(torch, a, data):
    """The model (10 classes: nomul's data.classes), then a function that
    reads the training set and returns the batch maker."""
    if a.model in VIT:
        model = build_vit(torch, torch.nn, VIT[a.model], CLASSES, 1, 28)
    else:
        model = build_resnet(torch.nn, RESNET[a.model], CLASSES, 1)
        if a.channels_last:
            model = model.to(memory_format=torch.channels_last)

    def load():
        import numpy as np
        x = read_idx(os.path.join(data, "train-images-idx3-ubyte.gz"), 3)
        y = read_idx(os.path.join(data, "train-labels-idx1-ubyte.gz"), 1)
        if len(x) != len(y):
            raise Failure("'%s': %d images but %d labels" % (data, len(x), len(y)))
        if len(x) < a.batch or x.shape[1:] != (28, 28) or y.max() >= CLASSES:
            raise Failure("'%s' holds %d images of %s pixels, labels up to %d; want at least "
                          "--batch %d of 28×28 pixels, labels below %d" % (
                              data, len(x), "×".join(map(str, x.shape[1:])), y.max(), a.batch,
                              CLASSES))
        images = torch.from_numpy(x).unsqueeze(1)  # (n, 1, h, w) uint8
        labels = torch.from_numpy(y.astype(np.int64))
        g = torch.Generator().manual_seed(a.seed)
        state = {"perm": None, "at": 0}

        def batch():
            n = len(images) // a.batch  # drop_last, as nomul's loader
            if state["perm"] is None or state["at"] == n:
                state["perm"], state["at"] = torch.randperm(len(images), generator=g), 0
            idx = state["perm"][state["at"] * a.batch:(state["at"] + 1) * a.batch]
            state["at"] += 1
            xb = images[idx].float().div_(255.0).sub_(MEAN).div_(STD)
            if a.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            return (xb,), labels[idx], a.batch

        return batch

    return model, load, "images", -100, IMAGE_OPT


def text_task(torch, a, data):
    src_ids, vs = read_dict(os.path.join(data, "dict.de.txt"))
    tgt_ids, vt = read_dict(os.path.join(data, "dict.en.txt"))
    model = build_seq2seq(torch, torch.nn, SEQ2SEQ[a.model], vs, vt)

    def load():
        src_lines = read_lines(os.path.join(data, "train.bpe.de"))
        tgt_lines = read_lines(os.path.join(data, "train.bpe.en"))
        if len(src_lines) != len(tgt_lines) or not src_lines:
            raise Failure("'%s': train.bpe.de has %d lines, train.bpe.en %d (want equal, at "
                          "least 1)" % (data, len(src_lines), len(tgt_lines)))

        def encode(line, ids):  # nomul_vocab_encode: tokens, unknown ones as <unk>, then </s>
            return [ids.get(w, UNK) for w in line.replace("\t", " ").split(" ") if w] + [EOS]

        src = [encode(s, src_ids) for s in src_lines]
        tgt = [encode(s, tgt_ids) for s in tgt_lines]
        batches = token_batches([len(s) for s in src], [len(t) for t in tgt], a.max_tokens)
        g = torch.Generator().manual_seed(a.seed)
        state = {"perm": None, "at": 0}

        def batch():
            if state["perm"] is None or state["at"] == len(batches):
                state["perm"], state["at"] = torch.randperm(len(batches), generator=g).tolist(), 0
            rows = batches[state["perm"][state["at"]]]
            state["at"] += 1
            n, ms, mt = len(rows), max(len(src[i]) for i in rows), max(len(tgt[i]) for i in rows)
            s = torch.full((n, ms), PAD, dtype=torch.long)
            tin = torch.full((n, mt), PAD, dtype=torch.long)
            tout = torch.full((n, mt), PAD, dtype=torch.long)
            tokens = 0
            for r, i in enumerate(rows):  # the decoder sees <s>, then the target shifted right
                s[r, :len(src[i])] = torch.tensor(src[i])
                tin[r, 0] = BOS
                tin[r, 1:len(tgt[i])] = torch.tensor(tgt[i][:-1])
                tout[r, :len(tgt[i])] = torch.tensor(tgt[i])
                tokens += len(tgt[i])
            return (s, tin), tout.view(-1), tokens

        return batch

    return model, load, "tokens", PAD, TEXT_OPT


def run(a):
    if a.model in SEQ2SEQ:
        data = a.data or DING
    else:
        data = a.data or FMNIST
    expect = a.expect_params if a.expect_params is not None else nomul_params(a, data)
    import torch
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(a.seed)
    F = torch.nn.functional
    task = text_task if a.model in SEQ2SEQ else image_task
    model, load, items_name, ignore, opt = task(torch, a, data)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if params != expect:
        raise Failure("model %s: the twin has %d trainable parameters, nomul's has %d"
                      % (a.model, params, expect))
    next_batch = load()
    optimizer = torch.optim.AdamW(decay_groups(model, opt["weight_decay"]), lr=opt["lr"],
                                  betas=opt["betas"], eps=opt["eps"])
    model.train()
    items = 0
    t0 = time.perf_counter()
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            items, t0 = 0, time.perf_counter()
        inputs, target, n = next_batch()
        logits = model(*inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target,
                               ignore_index=ignore, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        items += n
        if not math.isfinite(loss.item()):
            raise Failure("training diverged: the loss is %g at step %d" % (loss.item(), step + 1))
    wall = time.perf_counter() - t0
    return {"model": a.model, "threads": a.threads, "params": params, "items": items_name,
            "items_per_s": items / wall, "step_ms": 1000.0 * wall / a.steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "channels_last": a.channels_last}


def main(argv):
    a = parse_args(argv)
    try:
        result = run(a)
    except Failure as e:
        sys.stderr.write("torch_twin: %s\n" % e)
        return 2
    except ImportError as e:
        sys.stderr.write("torch_twin: %s (Debian's python3-torch and python3-numpy; run with "
                         "/usr/bin/python3)\n" % e)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
