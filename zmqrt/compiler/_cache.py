"""On-disk cache of compiled kernel images.

Key: sha256 over the source text (and the headers beside it), the options, the arch, the NVRTC version and
the package version, so any change recompiles. Each entry is written atomically (temp file, then
``os.replace``) and carries a sha256 of its payload; an entry that fails the check is a miss and is removed.
Location: ``$ZMQRT_CACHE_DIR``, else ``$XDG_CACHE_HOME/zmqrt``, else ``~/.cache/zmqrt``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_MAGIC = b"ZMQRT-KCACHE-1\n"


def default_cache_dir() -> Path:
    env = os.environ.get("ZMQRT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "zmqrt"


def cache_key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no ambiguity between parts
        h.update(data)
    return h.hexdigest()


class KernelCache:
    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def _path(self, key: str, kind: str) -> Path:
        return self.directory / f"{key}.{kind}"

    def get(self, key: str, kind: str) -> bytes | None:
        path = self._path(key, kind)
        try:
            blob = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        payload = _unwrap(blob)
        if payload is None:
            self.corrupt += 1
            self.misses += 1
            log.warning("kernel cache entry %s is corrupt; recompiling", path)
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self.hits += 1
        return payload

    def put(self, key: str, kind: str, payload: bytes) -> None:
        """Atomic write; a failure to write (read-only home, full disk) is logged, never fatal."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=f".{kind}")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
                os.replace(tmp, self._path(key, kind))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write kernel cache in %s: %s", self.directory, exc)


def _unwrap(blob: bytes) -> bytes | None:
    if not blob.startswith(_MAGIC):
        return None
    rest = blob[len(_MAGIC):]
    digest, sep, payload = rest.partition(b"\n")
    if not sep or len(digest) != 64:
        return None
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return None
    return payload
