"""IDX parser, Fashion-MNIST loader, checksum verification and download (offline, file://)."""

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import tensorcalc.data.fashion as fashion
from tensorcalc.data import (
    FASHION_MNIST_FILES,
    ChecksumError,
    IDXError,
    download_fashion_mnist,
    load_fashion_mnist,
    parse_idx,
    read_idx,
    verify_fashion_mnist,
    write_idx,
)

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def no_default_dirs(monkeypatch, tmp_path):
    """Hide $TENSORCALC_DATA and the system directory."""
    monkeypatch.delenv("TENSORCALC_DATA", raising=False)
    monkeypatch.setattr(fashion, "SYSTEM_DIR", str(tmp_path / "no-system-dir"))


def test_parse_hand_made_idx_bytes():
    # 2×3 int16 big-endian, written by hand: magic 0x00000B02, dims 2 and 3
    values = [1, -2, 300, 4, 5, -32768]
    buf = struct.pack(">I", 0x0B02) + struct.pack(">2I", 2, 3) + struct.pack(">6h", *values)
    a = parse_idx(buf)
    assert a.dtype == np.int16 and a.dtype.isnative and a.shape == (2, 3)
    assert a.ravel().tolist() == values
    labels = struct.pack(">I", 0x0801) + struct.pack(">I", 4) + bytes([3, 1, 4, 1])
    assert parse_idx(labels, magic=0x801, shape=(4,)).tolist() == [3, 1, 4, 1]


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, a)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(read_idx(f), a)


def test_idx_errors(tmp_path):
    good = struct.pack(">I", 0x0801) + struct.pack(">I", 3) + bytes([1, 2, 3])
    with pytest.raises(IDXError, match="bad magic number 0x01000801"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(IDXError, match="bad magic"):
        parse_idx(struct.pack(">I", 0x0A01) + good[4:])          # 0x0A is no type code
    with pytest.raises(IDXError, match="magic number 0x00000801, expected 0x00000803"):
        parse_idx(good, magic=0x803)
    with pytest.raises(IDXError, match=r"shape \(3,\) of uint8 = 3 bytes.*has 2"):
        parse_idx(good[:-1])                                      # truncated
    with pytest.raises(IDXError, match="has 4"):
        parse_idx(good + b"\x00")                                 # trailing garbage
    with pytest.raises(IDXError, match=r"shape \(3,\), expected \(4,\)"):
        parse_idx(good, shape=(4,))
    with pytest.raises(IDXError, match="too short"):
        parse_idx(b"\x00\x00")
    bad_gz = tmp_path / "x.gz"
    bad_gz.write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(IDXError, match="corrupt gzip"):
        read_idx(bad_gz)


def _make_split(directory: Path, prefix: str, n: int, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    # distinct images without the cost of compressing 7.8 MB of pure noise
    x = rng.integers(0, 256, size=(n, 1, 1), dtype=np.uint8) ^ rng.integers(
        0, 256, size=(1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    ext = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", x)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", y)
    return x, y


def test_load_from_data_dir_and_env(tmp_path, monkeypatch, no_default_dirs):
    d = tmp_path / "mine"
    d.mkdir()
    x, y = _make_split(d, "t10k", 10000)
    xl, yl = load_fashion_mnist("test", data_dir=d)
    assert xl.shape == (10000, 28, 28) and xl.dtype == np.uint8 and yl.dtype == np.uint8
    np.testing.assert_array_equal(xl, x)
    np.testing.assert_array_equal(yl, y)
    # $TENSORCALC_DATA/fashion-mnist, uncompressed files
    root = tmp_path / "root"
    (root / "fashion-mnist").mkdir(parents=True)
    x2, _ = _make_split(root / "fashion-mnist", "t10k", 10000, seed=1, gz=False)
    monkeypatch.setenv("TENSORCALC_DATA", str(root))
    np.testing.assert_array_equal(load_fashion_mnist("test")[0], x2)


def test_load_rejects_wrong_sizes_and_labels(tmp_path, no_default_dirs):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10, np.uint8))
    with pytest.raises(IDXError, match=r"expected \(10000, 28, 28\)"):
        load_fashion_mnist("test", data_dir=tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10000, 10, np.uint8))
    with pytest.raises(IDXError, match="label 10 outside"):
        load_fashion_mnist("test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist("val", data_dir=tmp_path)


def test_missing_files_message(tmp_path, no_default_dirs):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist("train", data_dir=tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path) in msg
    assert "apt-get install -y dataset-fashion-mnist" in msg
    assert "download_fashion_mnist" in msg and "TENSORCALC_DATA" in msg


def _mirror(tmp_path, seed=0):
    """A local 'server' directory with four small IDX .gz files and their checksum table."""
    src = tmp_path / "server"
    src.mkdir()
    table = {}
    rng = np.random.default_rng(seed)
    for name in FASHION_MNIST_FILES:
        shape = (5, 28, 28) if "images" in name else (5,)
        write_idx(src / name, rng.integers(0, 10, size=shape, dtype=np.uint8))
        data = (src / name).read_bytes()
        table[name] = {"sha256": hashlib.sha256(data).hexdigest(),
                       "raw_sha256": hashlib.sha256(gzip.decompress(data)).hexdigest()}
    return src, table


def test_download_verifies_checksums(tmp_path):
    src, table = _mirror(tmp_path)
    dest = download_fashion_mnist(tmp_path / "dl", base_url=src.as_uri(), checksums=table,
                                  progress=False)
    assert sorted(os.listdir(dest)) == sorted(table)
    for name in table:
        assert (dest / name).read_bytes() == (src / name).read_bytes()
    # a mirror list: the first one is unreachable, the second one serves the files
    dest2 = download_fashion_mnist(tmp_path / "dl2", checksums=table, progress=False,
                                   base_url=[(tmp_path / "nowhere").as_uri(), src.as_uri()])
    assert sorted(os.listdir(dest2)) == sorted(table)


def test_download_rejects_tampered_file_and_leaves_nothing(tmp_path):
    src, table = _mirror(tmp_path)
    name = "t10k-labels-idx1-ubyte.gz"
    write_idx(src / name, np.full(5, 7, np.uint8))      # the server now serves other data
    dest = tmp_path / "dl"
    with pytest.raises(ChecksumError, match=name):
        download_fashion_mnist(dest, base_url=src.as_uri(), checksums=table, progress=False)
    assert not (dest / name).exists()
    assert not [p for p in os.listdir(dest) if p.endswith(".part")]


def test_repackaged_archive_accepted_by_payload_hash(tmp_path, no_default_dirs):
    src, table = _mirror(tmp_path)
    # recompress every file with another gzip header: archive hash differs, payload is the same
    for name in table:
        raw = gzip.decompress((src / name).read_bytes())
        (src / name).write_bytes(gzip.compress(raw, mtime=123456))
        assert hashlib.sha256((src / name).read_bytes()).hexdigest() != table[name]["sha256"]
    got = verify_fashion_mnist(src, checksums=table)
    assert set(got.values()) == {"payload"}
    (src / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 13))
    with pytest.raises(ChecksumError, match="train-labels"):
        verify_fashion_mnist(src, checksums=table)


# Original gzip mtimes of the official archives (recovered: the Debian files' deflate streams with
# these headers reproduce the official MD5s).
_OFFICIAL_MTIME = {"train": 1504176606, "t10k": 1504176627}


def test_real_files_if_installed(monkeypatch):
    """With dataset-fashion-mnist installed: the real data and the checksum table; without it:
    the default search raises the helpful FileNotFoundError."""
    monkeypatch.delenv("TENSORCALC_DATA", raising=False)
    if not (SYSTEM / "t10k-labels-idx1-ubyte.gz").is_file():
        with pytest.raises(FileNotFoundError, match="apt-get install"):
            load_fashion_mnist("test")
        return
    x, y = load_fashion_mnist("test", verify=True)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
    assert set(verify_fashion_mnist()) == set(FASHION_MNIST_FILES)
    # rebuild the official archives from the Debian ones: same deflate stream, official header
    for name, spec in FASHION_MNIST_FILES.items():
        deb = (SYSTEM / name).read_bytes()
        if deb[3] != 0:          # the Debian header has no optional fields: nothing to rebuild
            assert hashlib.sha256(deb).hexdigest() == spec["sha256"]
            continue
        stem = name[: -len(".gz")]
        mtime = _OFFICIAL_MTIME["train" if name.startswith("train") else "t10k"]
        header = (b"\x1f\x8b\x08\x08" + struct.pack("<I", mtime) + b"\x00\x03"
                  + stem.encode() + b"\x00")
        official = header + deb[10:]
        assert len(official) == spec["size"]
        assert hashlib.md5(official).hexdigest() == spec["md5"]
        assert hashlib.sha256(official).hexdigest() == spec["sha256"]
        assert hashlib.sha256(gzip.decompress(official)).hexdigest() == spec["raw_sha256"]
