"""The IDX reader: exact round trips, and a one-line DatasetError for every bad file."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfnas.data.idx import read_idx
from selfnas.errors import DatasetError


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    """Header (magic + big-endian dims) followed by the raw uint8 data."""
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def assert_one_line_error(path: Path, *fragments: str) -> str:
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 3, 4, 5), (0, 28, 28)])
def test_round_trip(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    loaded = read_idx(write_idx(tmp_path / name, array))
    assert loaded.dtype == np.uint8 and loaded.shape == shape
    assert loaded.flags.writeable and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_truncated_file(tmp_path: Path, name: str) -> None:
    data = idx_bytes(np.zeros((4, 6, 6), dtype=np.uint8))[:-5]
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert_one_line_error(path, str(path), "truncated", "apt-get install --reinstall dataset-fashion-mnist")


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(10, dtype=np.uint8)) + b"junk")
    assert_one_line_error(path, str(path), "corrupt")


@pytest.mark.parametrize(
    ("magic", "fragment"),
    [
        (bytes([1, 0, 8, 1]), "magic"),
        (bytes([0, 7, 8, 1]), "magic"),
        (bytes([0, 0, 0x0D, 1]), "dtype code 0x0d"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 5]), "5 dimensions"),
    ],
)
def test_bad_magic(tmp_path: Path, magic: bytes, fragment: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(magic + (1).to_bytes(4, "big") * magic[3] + b"\x00" * 8)
    assert_one_line_error(path, str(path), fragment)


def test_short_header(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    assert_one_line_error(path, "header")


@pytest.mark.parametrize(
    "payload",
    [b"not gzip at all", gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:-12]],
    ids=["not-gzip", "cut-gzip-stream"],
)
def test_bad_gzip(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(payload)
    assert_one_line_error(path, str(path), "gzip")


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path / "absent.gz", "cannot read", "absent.gz")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_one_line_error(tmp_path, "cannot read")


FUZZ_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
plausible_header = st.builds(
    lambda ndim, rest: bytes([0, 0, 8, ndim]) + rest, st.integers(0, 6), st.binary(max_size=64)
)


@FUZZ_SETTINGS
@given(data=st.one_of(st.binary(max_size=64), plausible_header), gz=st.booleans())
def test_fuzz_only_dataset_errors(tmp_path: Path, data: bytes, gz: bool) -> None:
    path = tmp_path / ("fuzz.gz" if gz else "fuzz")
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        array = read_idx(path)
    except DatasetError as exc:
        assert "\n" not in str(exc)
    else:
        assert array.dtype == np.uint8 and 1 <= array.ndim <= 4


@FUZZ_SETTINGS
@given(data=st.binary(max_size=64))
def test_fuzz_raw_bytes_behind_gz_name(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "raw.gz"
    path.write_bytes(data)
    with contextlib.suppress(DatasetError):
        read_idx(path)
