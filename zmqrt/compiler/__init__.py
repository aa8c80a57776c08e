"""Compile every kernel source of a registry with NVRTC, through the on-disk cache.

``compile_registry`` returns, per source, the PTX (always) and the CUBIN for the exact ``sm_XY``. Loading is
the backend's business (``zmqrt.backends.cuda``): it takes the CUBIN, and falls back to the PTX only when the
driver is at least as new as NVRTC (a PTX from a newer NVRTC fails with UNSUPPORTED_PTX_VERSION).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ._cache import KernelCache, cache_key, default_cache_dir
from ._nvrtc import Images, NvrtcError, compile_source, nvrtc_version

__all__ = [
    "COMPILE_OPTIONS",
    "CompiledSource",
    "Images",
    "KernelCache",
    "NvrtcError",
    "compile_registry",
    "compile_source",
    "default_cache_dir",
    "nvrtc_version",
]

log = logging.getLogger(__name__)

# No fast-math: the kernels promise error bounds against numpy (fft twiddles, reductions).
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)


@dataclass(frozen=True)
class CompiledSource:
    source_id: str
    path: Path
    arch: str
    ptx: bytes
    cubin: bytes | None
    from_cache: bool
    seconds: float


def _key(path: Path, text: str, arch: str, nvrtc_ver: tuple[int, int]) -> str:
    headers = sorted(path.parent.glob("*.cuh"))
    parts: list[str | bytes] = [text, *(h.read_bytes() for h in headers)]
    return cache_key(*parts, repr(COMPILE_OPTIONS), arch, f"nvrtc-{nvrtc_ver[0]}.{nvrtc_ver[1]}", __version__)


def compile_one(source_id: str, path: Path, arch: str, cache: KernelCache | None,
                want_cubin: bool = True) -> CompiledSource:
    t0 = time.perf_counter()
    text = path.read_text()
    key = _key(path, text, arch, nvrtc_version())
    if cache is not None:
        ptx = cache.get(key, "ptx")
        cubin = cache.get(key, "cubin") if want_cubin else None
        if ptx is not None and (cubin is not None or not want_cubin):
            return CompiledSource(source_id, path, arch, ptx, cubin, True, time.perf_counter() - t0)
    images = compile_source(text, path.name, arch, COMPILE_OPTIONS, (path.parent,), want_cubin)
    if images.log.strip():
        log.info("nvrtc %s: %s", path.name, images.log.strip())
    if cache is not None:
        cache.put(key, "ptx", images.ptx)
        if images.cubin is not None:
            cache.put(key, "cubin", images.cubin)
    return CompiledSource(source_id, path, arch, images.ptx, images.cubin, False, time.perf_counter() - t0)


def compile_registry(registry, arch: str, cache: KernelCache | None = None, want_cubin: bool = True,
                     progress: Callable[[CompiledSource], None] | None = None) -> dict[str, CompiledSource]:
    """Compile (or fetch from ``cache``) every source of ``registry`` for ``arch`` such as ``sm_90``."""
    out: dict[str, CompiledSource] = {}
    for source_id, path in registry.sources().items():
        compiled = compile_one(source_id, Path(path), arch, cache, want_cubin)
        out[source_id] = compiled
        if progress is not None:
            progress(compiled)
    return out
