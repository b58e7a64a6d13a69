"""Small file helpers several modules share: an atomic write and a file's SHA-256."""

from __future__ import annotations

import hashlib
import os


def write_atomically(path: str, text: str) -> None:
    """Write to a temporary name, then rename: a reader (or a rerun) never sees half a file."""
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)


def sha256_of(path: str) -> str:
    """The file's SHA-256 in hex, read in blocks so memory stays flat for any size."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
