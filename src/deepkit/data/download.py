"""Downloading public datasets into the data root, with checksums. Nothing is downloaded unless asked
(``data.download=true``); an offline machine gets a clear error instead."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from deepkit.errors import DataError

# The canonical LeCun files; the MD5s are the published ones (also checked by torchvision).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(urls: list[str], dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Fetch the first URL that works into ``dest`` (atomically) and verify its MD5."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                while chunk := r.read(1 << 20):
                    out.write(chunk)
            got = md5sum(Path(tmp))
            if got != md5:
                errors.append(f"{url}: md5 {got}, expected {md5}")
                continue
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(f"could not download {dest.name}: " + "; ".join(errors))


def download_mnist(folder: str | Path, mirrors: list[str] | None = None) -> Path:
    """Download the four MNIST files into ``folder`` unless already there with the right checksum."""
    folder = Path(folder)
    for name, md5 in MNIST_MD5.items():
        dest = folder / name
        if dest.is_file() and md5sum(dest) == md5:
            continue
        download_file([m + name for m in (mirrors or MNIST_MIRRORS)], dest, md5)
    return folder
