"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence): 60,000 + 10,000 greyscale 28×28
images of clothing in 10 classes, read from the four official IDX files.

Where the files are looked for, in order (each directory may hold the ``.gz`` files or their
decompressed versions)::

    data_dir (argument)  and  data_dir/fashion-mnist
    $TENSORCALC_DATA/fashion-mnist  and  $TENSORCALC_DATA
    /usr/share/datasets/fashion-mnist     (Debian/Ubuntu: apt-get install dataset-fashion-mnist)

Nothing is ever downloaded implicitly: :func:`load_fashion_mnist` raises FileNotFoundError
saying how to get the files, and :func:`download_fashion_mnist` fetches them on request,
verifying each against :data:`FASHION_MNIST_FILES`.

Checksums. For every file the table holds the official archive's size, MD5 (the published
``md5`` of the Zalando README, also used by torchvision) and SHA-256, and the SHA-256 of the
decompressed IDX payload. The Debian package recompresses the archives (its gzip headers lack the
file name and original time stamp) so its ``.gz`` bytes differ while the IDX payload is the same;
a file is therefore accepted if its archive SHA-256 matches, or if its payload SHA-256 matches.
How the table was checked: the Debian files' deflate streams, given the official gzip header
(FNAME set, original name, mtime 2017-08-31 10:50:06/27 UTC), reproduce files whose MD5 equals the
official MD5 for all four files; their SHA-256 are the archive hashes below (which agree with
those published by several independent projects), and the payload hashes are those of the
decompressed Debian files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .idx import IDXError, parse_idx

__all__ = ["load_fashion_mnist", "download_fashion_mnist", "verify_fashion_mnist",
           "FASHION_MNIST_MIRRORS",
           "find_fashion_mnist", "FASHION_MNIST_FILES", "FASHION_MNIST_CLASSES",
           "FASHION_MNIST_URL", "SYSTEM_DIR", "file_sha256", "ChecksumError"]

FASHION_MNIST_URL = "https://fashion-mnist.s3.eu-central-1.amazonaws.com/"
#: other places serving byte-identical files
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

#: name -> size (bytes of the official .gz), md5 and sha256 of the official .gz, sha256 of the
#: decompressed IDX payload, payload size
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": {
        "size": 26421880,
        "md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "sha256": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "raw_sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "raw_size": 47040016,
    },
    "train-labels-idx1-ubyte.gz": {
        "size": 29515,
        "md5": "25c81989df183df01b3e8a0aad5dffbe",
        "sha256": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "raw_sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "raw_size": 60008,
    },
    "t10k-images-idx3-ubyte.gz": {
        "size": 4422102,
        "md5": "bef4ecab320f06d8554ea6380940ec79",
        "sha256": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "raw_sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "raw_size": 7840016,
    },
    "t10k-labels-idx1-ubyte.gz": {
        "size": 5148,
        "md5": "bb300cfdad3c16e7a12a480ee83cd310",
        "sha256": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        "raw_sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "raw_size": 10008,
    },
}

_SPLITS = {"train": ("train", 60000), "test": ("t10k", 10000)}


class ChecksumError(ValueError):
    """A file whose bytes do not match the checksum table."""


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _candidates(data_dir=None) -> list[Path]:
    dirs = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    env = os.environ.get("TENSORCALC_DATA")
    if env:
        dirs += [Path(env) / "fashion-mnist", Path(env)]
    dirs.append(Path(SYSTEM_DIR))
    return dirs


def _find(directory: Path, gz_name: str) -> Path | None:
    for p in (directory / gz_name, directory / gz_name[:-3]):
        if p.is_file():
            return p
    return None


def _missing_message(split: str, searched: list[Path], missing: list[str]) -> str:
    where = "\n".join(f"  - {d}" for d in searched)
    return (
        f"Fashion-MNIST ({split}): files {', '.join(missing)} not found. Looked in:\n{where}\n"
        f"Get them in one of these ways:\n"
        f"  * Debian/Ubuntu (as root):  apt-get install -y dataset-fashion-mnist\n"
        f"    (installs them in {SYSTEM_DIR})\n"
        f"  * with internet:  python -c \"import tensorcalc.data as d; "
        f"d.download_fashion_mnist('~/data/fashion-mnist')\"\n"
        f"    then pass data_dir='~/data/fashion-mnist' or set TENSORCALC_DATA=~/data\n"
        f"  * copy the four {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz files into a "
        f"directory and set TENSORCALC_DATA to its parent (as <parent>/fashion-mnist) or pass "
        f"data_dir="
    )


def find_fashion_mnist(split: str = "train", data_dir=None) -> tuple[Path, Path]:
    """Paths of the (images, labels) files for ``split``; FileNotFoundError if not found.

    A directory counts only if it holds both files of the split.
    """
    if split not in _SPLITS:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    prefix, _ = _SPLITS[split]
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    searched = []
    if data_dir is not None:
        data_dir = Path(os.path.expanduser(os.fspath(data_dir)))
    for d in _candidates(data_dir):
        searched.append(d)
        found = [_find(d, n) for n in names]
        if all(found):
            return found[0], found[1]
    raise FileNotFoundError(_missing_message(split, searched, names))


def _payload(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IDXError(f"{path}: corrupt gzip data ({e})") from e
    return raw


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _verify(path: Path, gz_name: str, table: dict, raw: bytes | None = None) -> str:
    """Check a file against the table; return how it matched ('archive' or 'payload')."""
    spec = table[gz_name]
    archive = None
    if _is_gzip(path):
        archive = file_sha256(path)
        if spec.get("sha256") and archive == spec["sha256"]:
            return "archive"
    raw = _payload(path) if raw is None else raw
    got = hashlib.sha256(raw).hexdigest()
    if spec.get("raw_sha256") and got == spec["raw_sha256"]:
        return "payload"
    raise ChecksumError(
        f"{path}: checksum mismatch for {gz_name}: SHA-256 of the IDX payload is {got}, expected "
        f"{spec.get('raw_sha256')}" + (f"; of the archive {archive}, expected {spec.get('sha256')}"
                                       if archive else "")
        + "; the file is corrupt or not the official release — delete it and fetch it again")


def verify_fashion_mnist(data_dir=None, checksums=None) -> dict:
    """Verify the four files found for both splits; returns {file: 'archive'|'payload'}."""
    table = checksums or FASHION_MNIST_FILES
    result = {}
    for split in _SPLITS:
        for path in find_fashion_mnist(split, data_dir):
            gz_name = path.name if path.name.endswith(".gz") else path.name + ".gz"
            result[gz_name] = _verify(path, gz_name, table)
    return result


def load_fashion_mnist(split: str = "train", data_dir=None, verify: bool = False):
    """Fashion-MNIST ``(x, y)``: x (N, 28, 28) uint8 in 0..255, y (N,) uint8 in 0..9, with
    N = 60,000 for ``split='train'`` and 10,000 for ``'test'``.

    The IDX headers are checked (magic numbers 0x803 / 0x801, 28×28 images, N images and N
    labels, labels < 10); ``verify=True`` also checks the SHA-256 checksums. Class names are in
    :data:`FASHION_MNIST_CLASSES`. Missing files raise FileNotFoundError saying how to get them.
    """
    img_path, lab_path = find_fashion_mnist(split, data_dir)
    n = _SPLITS[split][1]
    out = []
    for path, magic, shape in ((img_path, 0x803, (n, 28, 28)), (lab_path, 0x801, (n,))):
        raw = _payload(path)
        if verify:
            gz_name = path.name if path.name.endswith(".gz") else path.name + ".gz"
            _verify(path, gz_name, FASHION_MNIST_FILES, raw=raw)
        out.append(parse_idx(raw, str(path), magic=magic, shape=shape))
    x, y = out
    if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
        raise IDXError(f"{lab_path}: label {int(y.max())} outside 0..9")
    return x, y


def _fetch(url: str, tmp: Path, name: str, timeout: float, progress: bool) -> None:
    with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
        total = int(r.headers.get("Content-Length") or 0)
        bar = None
        if progress and total > 1 << 20:
            try:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False)
            except ImportError:  # pragma: no cover
                bar = None
        while block := r.read(1 << 16):
            out.write(block)
            if bar is not None:
                bar.update(len(block))
        if bar is not None:
            bar.close()


def download_fashion_mnist(data_dir, base_url=FASHION_MNIST_URL, force: bool = False,
                           checksums=None, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download the four Fashion-MNIST files into ``data_dir`` and verify them; return the dir.

    Each file is fetched with urllib from ``base_url + name`` (https, http or file URLs;
    ``base_url`` may be a list tried in order, e.g. ``[FASHION_MNIST_URL,
    *FASHION_MNIST_MIRRORS]``), written to a temporary file, checked against the checksum table
    (``checksums`` overrides :data:`FASHION_MNIST_FILES`, e.g. for a private mirror) and only then
    moved into place; a mismatch deletes it and raises ChecksumError. Files already present and
    valid are kept unless ``force``. Never called implicitly by any loader.
    """
    table = checksums or FASHION_MNIST_FILES
    bases = [base_url] if isinstance(base_url, str) else list(base_url)
    bases = [b if b.endswith("/") else b + "/" for b in bases]
    if not bases:
        raise ValueError("download_fashion_mnist: no base_url given")
    directory = Path(os.path.expanduser(os.fspath(data_dir)))
    directory.mkdir(parents=True, exist_ok=True)
    for name in table:
        target = directory / name
        if target.is_file() and not force:
            try:
                _verify(target, name, table)
                continue
            except (ChecksumError, IDXError):
                pass  # damaged: fetch again
        errors, checksum_failures = [], 0
        for base in bases:
            fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=directory)
            os.close(fd)
            tmp = Path(tmp)
            try:
                _fetch(base + name, tmp, name, timeout, progress)
                _verify(tmp, name, table)
                shutil.move(str(tmp), target)
                break
            except (OSError, ValueError) as e:  # URLError is an OSError; checksum a ValueError
                errors.append(f"{base + name}: {e}")
                checksum_failures += isinstance(e, ChecksumError)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            if checksum_failures == len(errors):
                raise ChecksumError("download_fashion_mnist: " + "\n".join(errors))
            raise OSError("download_fashion_mnist: could not fetch a valid " + name + ":\n  "
                          + "\n  ".join(errors))
    return directory
