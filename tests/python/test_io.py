"""nomul.safetensors (files written here byte by byte as the format defines
them; broken ones refused naming the file) and nomul.data (IDX sets, the
loader's epochs and normalization)."""
import json
import os
import shutil
import struct
import tempfile

from util import SeededCase

import numpy as np

import nomul
import nomul.data as D
import nomul.safetensors as S


def st_bytes(tensors, meta=None, header=None):
    h, body = {}, b""
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        dt = {"float32": "F32", "int32": "I32", "uint8": "U8", "float64": "F64"}[a.dtype.name]
        h[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [len(body),
                                                                          len(body) + len(raw)]}
        body += raw
    if meta is not None:
        h["__metadata__"] = meta
    text = (json.dumps(h) if header is None else header).encode()
    return struct.pack("<Q", len(text)) + text + body


class SafetensorsRead(SeededCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="nomul-st-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write(self, data):
        path = os.path.join(self.dir, "f.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_round_trip(self):
        t = {"a": self.random_bits(12).reshape(3, 4), "b": np.arange(5, dtype=np.int32),
             "s": np.array(2.5, dtype=np.float32), "e": np.zeros((0, 3), np.float32)}
        got, meta = S.load(self.write(st_bytes(t, {"k": "v"})))
        self.assertEqual(meta, {"k": "v"})
        self.assertEqual(set(got), set(t))
        for k in t:
            self.assertEqual(got[k].shape, t[k].shape)
            self.assertEqual(got[k].tobytes(), t[k].tobytes(), k)

    def test_broken_files(self):
        good = st_bytes({"a": np.zeros(4, np.float32)})
        hdr = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
        cases = {
            "short": good[:5],
            "header past the end": struct.pack("<Q", 1 << 40) + good[8:],
            "not JSON": st_bytes({}, header="{nope"),
            "not an object": st_bytes({}, header="[1]"),
            "unknown dtype": st_bytes({}, header=json.dumps(
                {"a": dict(hdr["a"], dtype="Q8")})),
            "offsets past the data": st_bytes({}, header=json.dumps(hdr)),
            "size disagrees": st_bytes({"a": np.zeros(4, np.float32)}, header=json.dumps(
                {"a": dict(hdr["a"], shape=[5])})),
            "negative shape": st_bytes({"a": np.zeros(4, np.float32)}, header=json.dumps(
                {"a": dict(hdr["a"], shape=[-4])})),
            "overlap": st_bytes({"a": np.zeros(4, np.float32)}, header=json.dumps(
                {"a": hdr["a"], "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})),
            "extra key": st_bytes({"a": np.zeros(4, np.float32)}, header=json.dumps(
                {"a": dict(hdr["a"], x=1)})),
        }
        for why, data in cases.items():
            path = self.write(data)
            with self.assertRaises(ValueError, msg=why) as cm:
                S.load(path)
            self.assertIn(path, str(cm.exception), why)


def write_idx(path, a):
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, a.ndim))
        f.write(b"".join(struct.pack(">I", d) for d in a.shape))
        f.write(a.astype(np.uint8).tobytes())


class Data(SeededCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="nomul-data-")
        self.n = int(self.rng.integers(20, 60))
        self.pix = self.rng.integers(0, 256, (self.n, 6, 5)).astype(np.uint8)
        self.lab = self.rng.integers(0, 7, self.n).astype(np.uint8)
        self.img_path = os.path.join(self.dir, "img")
        self.lab_path = os.path.join(self.dir, "lab")
        write_idx(self.img_path, self.pix)
        write_idx(self.lab_path, self.lab)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_set_and_epochs(self):
        s = D.ImageSet.from_idx(self.img_path, self.lab_path, 10)
        self.assertEqual((s.n, s.shape, s.classes), (self.n, (6, 5, 1), 10))
        self.assertTrue(np.array_equal(s.labels(), self.lab))
        batch = 4
        loader = D.Loader(s, batch, seed=int(self.rng.integers(1 << 30)), mean=0.25, std=0.5)
        self.assertEqual(len(loader), self.n // batch)
        orders = []
        for epoch in range(2):
            seen = []
            for x, y in loader.epoch(epoch):
                self.assertEqual(x.shape, (batch, 1, 6, 5))
                for xi, yi in zip(x, y):
                    # which image: the normalization (v/255 − mean)/std inverted
                    v = np.rint((xi[0] * 0.5 + 0.25) * 255).astype(np.int64)
                    k = [i for i in range(self.n) if np.array_equal(self.pix[i], v)]
                    self.assertTrue(k, "a batch image is none of the set's")
                    self.assertEqual(yi, self.lab[k[0]])
                    want = (self.pix[k[0]].astype(np.float64) / 255 - 0.25) / 0.5
                    self.assertLess(np.abs(xi[0] - want).max(), 1e-6)
                    seen.append(k[0])
            self.assertEqual(len(set(seen)), len(seen), "an image twice in an epoch")
            self.assertEqual(len(seen), (self.n // batch) * batch)
            orders.append(seen)
        self.assertNotEqual(orders[0], orders[1], "epochs share their order")
        again = [int(np.rint((x[0, 0] * 0.5 + 0.25) * 255)[0, 0]) for x, _ in loader.epoch(0)]
        first = [int(self.pix[k][0, 0]) for k in orders[0][::batch]]
        self.assertEqual(again, first, "an epoch replays its order")

    def test_limit_and_order(self):
        s = D.ImageSet.from_idx(self.img_path, self.lab_path, 0, limit=10)
        self.assertEqual(len(s), 10)
        loader = D.Loader(s, 3, shuffle=False, drop_last=False)
        ys = np.concatenate([y for _, y in loader.epoch(0)])
        self.assertTrue(np.array_equal(ys, self.lab[:10]))

    def test_errors_name_the_file(self):
        missing = os.path.join(self.dir, "none")
        with self.assertRaises(nomul.NomulError) as cm:
            D.ImageSet.from_idx(missing, self.lab_path)
        self.assertIn(missing, str(cm.exception))
        s = D.ImageSet.from_idx(self.img_path, self.lab_path)
        with self.assertRaises(nomul.NomulError):
            D.Loader(s, self.n + 1)  # no full batch with drop_last
        with self.assertRaises(TypeError):
            D.Loader(object(), 4)
