"""nomul.data — nomul's image sets and batch loader (nomul/data.h) from
Python: the very batches `nomul train` draws (the same seeded shuffle per
epoch, the same augmentation and normalization), as numpy arrays.

    s = ImageSet.from_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                          classes=10, limit=1000)
    loader = Loader(s, batch=64, seed=0, hflip=False, mean=0.286, std=0.353)
    for x, y in loader.epoch(0):    # x (64, 1, 28, 28) float32, y (64,) int32
        ...

`nomul train` loads data.train this way with shuffle and drop_last on and
its aug.* keys; an epoch's order depends only on (seed, epoch).
"""
import ctypes

import numpy as np

from ._lib import NomulError, call, lib

__all__ = ["ImageSet", "Loader"]


class _CImageSet(ctypes.Structure):
    _fields_ = [("n", ctypes.c_long), ("h", ctypes.c_int), ("w", ctypes.c_int),
                ("c", ctypes.c_int), ("classes", ctypes.c_int),
                ("pixels", ctypes.c_void_p), ("labels", ctypes.c_void_p)]


class _CAugment(ctypes.Structure):
    _fields_ = [("crop_pad", ctypes.c_int), ("hflip", ctypes.c_int),
                ("mean", ctypes.c_float * 4), ("std", ctypes.c_float * 4),
                ("randaugment_n", ctypes.c_int), ("randaugment_m", ctypes.c_float),
                ("randaugment_mstd", ctypes.c_float), ("erase_prob", ctypes.c_float)]


class ImageSet:
    """A labelled image set in memory (n images of h×w pixels, c channels)."""

    def __init__(self, handle):
        self._h = handle
        self._s = ctypes.cast(handle, ctypes.POINTER(_CImageSet)).contents

    @classmethod
    def from_idx(cls, images, labels, classes=0, limit=0):
        """IDX image and label files (plain or gzip); classes 0: one more than
        the largest label; limit > 0: only the first `limit` images (as
        data.train_limit)."""
        h = call("nomul_image_set_from_idx", str(images).encode(), str(labels).encode(),
                 int(classes))
        if not h:
            raise NomulError("nomul_image_set_from_idx: failed")
        s = cls(h)
        if limit < 0:
            raise ValueError("nomul: limit must be ≥ 0, got %d" % limit)
        if 0 < limit < s._s.n:
            s._s.n = int(limit)
        return s

    @property
    def n(self):
        return self._s.n

    @property
    def shape(self):
        """(h, w, c) of every image."""
        return self._s.h, self._s.w, self._s.c

    @property
    def classes(self):
        return self._s.classes

    def labels(self):
        return np.ctypeslib.as_array(ctypes.cast(self._s.labels, ctypes.POINTER(ctypes.c_int32)),
                                     (self._s.n,)).copy()

    def __len__(self):
        return self._s.n

    def __del__(self):
        if getattr(self, "_h", None):
            lib.nomul_image_set_free(self._h)
            self._h = None


def _per_channel(v, name):
    v = [float(v)] * 4 if np.isscalar(v) else [float(t) for t in v]
    if not 1 <= len(v) <= 4:
        raise ValueError("nomul: %s needs 1 to 4 values (one per channel)" % name)
    return (ctypes.c_float * 4)(*(v + [v[-1]] * (4 - len(v))))


class Loader:
    """Batches of an ImageSet as `nomul train` makes them: shuffle (a seeded
    permutation per epoch) and drop_last as the trainer's (both on), the
    augmentation of aug.* (all off by default here) and normalization
    (v/255 − mean) / std per channel. The arrays a batch yields are copies."""

    def __init__(self, images, batch, seed=0, shuffle=True, drop_last=True, crop_pad=0,
                 hflip=False, mean=0.0, std=1.0, randaugment_n=0, randaugment_m=9.0,
                 randaugment_mstd=0.5, erase_prob=0.0):
        if not isinstance(images, ImageSet):
            raise TypeError("nomul: images must be a nomul.data.ImageSet")
        self.images = images  # the C loader reads it: keep it alive
        a = _CAugment(int(crop_pad), int(bool(hflip)), _per_channel(mean, "mean"),
                      _per_channel(std, "std"), int(randaugment_n), float(randaugment_m),
                      float(randaugment_mstd), float(erase_prob))
        self._l = None
        self._l = call("nomul_loader_new", images._h, int(batch), int(bool(shuffle)),
                       int(bool(drop_last)), ctypes.addressof(a), int(seed) & (2**64 - 1))
        if not self._l:
            raise NomulError("nomul_loader_new: failed")
        h, w, c = images.shape
        self._xshape = (c, h, w)

    def __len__(self):
        """Batches per epoch."""
        return lib.nomul_loader_batches(self._l)

    def epoch(self, epoch, first=0):
        """Yields (x (b, c, h, w) float32, y (b,) int32) for the batches of
        epoch `epoch` from batch `first` on."""
        call("nomul_loader_start", self._l, int(epoch), int(first))
        xp, yp = ctypes.c_void_p(), ctypes.c_void_p()
        while True:
            b = lib.nomul_loader_next(self._l, ctypes.byref(xp), ctypes.byref(yp))
            if b <= 0:
                return
            x = np.ctypeslib.as_array(ctypes.cast(xp, ctypes.POINTER(ctypes.c_float)),
                                      (b,) + self._xshape).copy()
            y = np.ctypeslib.as_array(ctypes.cast(yp, ctypes.POINTER(ctypes.c_int32)),
                                      (b,)).copy()
            yield x, y

    def __del__(self):
        if getattr(self, "_l", None):
            lib.nomul_loader_free(self._l)
            self._l = None
