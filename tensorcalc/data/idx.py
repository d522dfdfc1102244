"""The IDX file format (MNIST, Fashion-MNIST), read and written with NumPy only.

Layout (all integers big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                              0x0D float32, 0x0E float64
    byte  3     number of dimensions k
    4·k bytes   the k sizes d_1..d_k, each an unsigned 32-bit integer
    then        d_1·...·d_k elements in C order

So the 4-byte magic number of MNIST images is 0x00000803 (uint8, 3 dims) and of labels
0x00000801. A gzip-compressed file (leading bytes 0x1F 0x8B) is decompressed transparently.
"""

from __future__ import annotations

import gzip
import io
import os
import struct

import numpy as np

__all__ = ["IDXError", "read_idx", "parse_idx", "write_idx", "IDX_TYPES"]

#: element-type byte -> big-endian NumPy dtype
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in IDX_TYPES.items()}


class IDXError(ValueError):
    """A file that is not valid IDX, or not the IDX file that was expected."""


def parse_idx(buf: bytes, name: str = "IDX data", magic: int | None = None,
              shape: tuple | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian array, checking the header against the length.

    ``magic`` (e.g. 0x00000803) and ``shape`` (None entries are free) are checked if given.
    """
    if len(buf) < 4:
        raise IDXError(f"{name}: {len(buf)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", buf[:4])
    found = struct.unpack(">I", buf[:4])[0]
    if zero != 0 or code not in IDX_TYPES:
        raise IDXError(f"{name}: bad magic number 0x{found:08X} (expected 0x0000TTKK with type "
                       f"TT in {{08,09,0B,0C,0D,0E}})")
    if magic is not None and found != magic:
        raise IDXError(f"{name}: magic number 0x{found:08X}, expected 0x{magic:08X}")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise IDXError(f"{name}: truncated header ({len(buf)} bytes, {ndim} dims need {header})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    dtype = IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) - header != expected:
        raise IDXError(f"{name}: header says shape {dims} of {dtype.name} = {expected} bytes of "
                       f"data, the file has {len(buf) - header}")
    if shape is not None:
        pairs = zip(shape, dims, strict=False)
        if len(shape) != ndim or any(s is not None and s != d for s, d in pairs):
            want = tuple("*" if s is None else s for s in shape)
            raise IDXError(f"{name}: shape {dims}, expected {want}")
    arr = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _read_bytes(source) -> tuple[bytes, str]:
    if hasattr(source, "read"):
        raw, name = source.read(), getattr(source, "name", "IDX stream")
    else:
        name = os.fspath(source)
        with open(name, "rb") as f:
            raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IDXError(f"{name}: corrupt gzip data ({e})") from e
    return raw, str(name)


def read_idx(source, magic: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """Read an IDX file (path or binary file object; gzip or not) into a NumPy array."""
    raw, name = _read_bytes(source)
    return parse_idx(raw, name, magic=magic, shape=shape)


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as IDX (gzip-compressed if ``compress`` or the path ends in ``.gz``)."""
    a = np.ascontiguousarray(array)
    key = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
    if key not in _CODES:
        raise IDXError(f"write_idx: dtype {a.dtype} has no IDX type code")
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    data = header + a.astype(IDX_TYPES[code], copy=False).tobytes()
    path = os.fspath(path)
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as g:
            g.write(data)
        data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
