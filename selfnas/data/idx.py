"""A strict reader of IDX files (the MNIST / Fashion-MNIST format), plain or gzipped.

Layout: two zero bytes, a dtype code (only 0x08, uint8, is accepted), the number of
dimensions (1..4), one big-endian uint32 per dimension, then exactly
``prod(dims)`` bytes. Any deviation is a :class:`~selfnas.errors.DatasetError`.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from selfnas.errors import DatasetError

UINT8_CODE = 0x08
MAX_NDIM = 4
REINSTALL_HINT = "reinstall it with `apt-get install --reinstall dataset-fashion-mnist` or download it again"


def _corrupt(path: str | os.PathLike[str], detail: str) -> DatasetError:
    return DatasetError(f"{os.fspath(path)} is truncated or corrupt ({detail}); {REINSTALL_HINT}")


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    if not os.fspath(path).endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"bad gzip data: {exc}") from None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file; a name ending in ``.gz`` is decompressed first.

    Returns a writable, C-contiguous uint8 array shaped as the header's dimensions
    (e.g. N x 28 x 28 for images, N for labels).
    """
    data = _read_bytes(path)
    if len(data) < 4:
        raise _corrupt(path, f"{len(data)} bytes, shorter than the 4-byte magic")
    zero0, zero1, code, ndim = data[:4]
    if zero0 != 0 or zero1 != 0:
        raise _corrupt(path, f"bad magic {data[:4].hex()}, expected 0000 first")
    if code != UINT8_CODE:
        raise _corrupt(path, f"dtype code 0x{code:02x}, only 0x08 (uint8) is supported")
    if not 1 <= ndim <= MAX_NDIM:
        raise _corrupt(path, f"{ndim} dimensions, expected 1 to {MAX_NDIM}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, f"{len(data)} bytes, shorter than the {header}-byte header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise _corrupt(path, f"{len(data)} bytes, the header {dims} says {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
