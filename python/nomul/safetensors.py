"""nomul.safetensors — reads a safetensors file (nomul's checkpoints) into
numpy arrays: an 8-byte little-endian header length, a JSON header
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
then the tensors' bytes. Every check a broken file can fail is a ValueError
naming the file.

    tensors, metadata = nomul.safetensors.load("runs/x/checkpoint_last.safetensors")
"""
import json
import struct

import numpy as np

__all__ = ["load"]

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def load(path):
    """({name: numpy array}, metadata dict) of the file at path."""
    with open(path, "rb") as f:
        data = f.read()

    def bad(why):
        return ValueError("%s: not a valid safetensors file: %s" % (path, why))

    if len(data) < 8:
        raise bad("shorter than its 8-byte header length")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > len(data) - 8:
        raise bad("a header of %d bytes in a file of %d" % (hlen, len(data)))
    try:
        header = json.loads(data[8:8 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad("the header is not JSON (%s)" % e) from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body = memoryview(data)[8 + hlen:]
    meta = header.pop("__metadata__", {}) or {}
    out, spans = {}, []
    for name, d in header.items():
        if not isinstance(d, dict) or set(d) != {"dtype", "shape", "data_offsets"}:
            raise bad("tensor '%s': want exactly dtype, shape and data_offsets" % name)
        if d["dtype"] not in _DTYPES:
            raise bad("tensor '%s': dtype %r is not one of %s" % (name, d["dtype"],
                                                                  ", ".join(_DTYPES)))
        shape, offs = d["shape"], d["data_offsets"]
        if (not isinstance(shape, list) or
                not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                        for s in shape)):
            raise bad("tensor '%s': shape %r" % (name, shape))
        if (not isinstance(offs, list) or len(offs) != 2 or
                not all(isinstance(o, int) and not isinstance(o, bool) for o in offs) or
                not 0 <= offs[0] <= offs[1] <= len(body)):
            raise bad("tensor '%s': data_offsets %r outside its %d data bytes"
                      % (name, offs, len(body)))
        dt = np.dtype(_DTYPES[d["dtype"]])
        if offs[1] - offs[0] != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise bad("tensor '%s': %d bytes for shape %s of %s" % (name, offs[1] - offs[0],
                                                                    shape, d["dtype"]))
        spans.append((offs[0], offs[1], name))
        out[name] = np.frombuffer(body[offs[0]:offs[1]], dtype=dt).reshape(shape).astype(
            dt.newbyteorder("="))
    spans.sort()
    for (b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise bad("tensors '%s' and '%s' overlap" % (n0, n1))
    return out, meta
