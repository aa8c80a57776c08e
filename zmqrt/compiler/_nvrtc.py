"""NVRTC: CUDA C source to PTX and CUBIN, with errors that carry the compile log.

One compile for the exact ``sm_XY`` yields both images: the CUBIN (loads in about a millisecond, and loads on
an older driver of the same major version) and the PTX (kept for inspection and as a fallback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cuda.bindings import nvrtc


class NvrtcError(RuntimeError):
    """Compilation failed. Keeps the log, the source name, the options and the source itself."""

    def __init__(self, call: str, status, source_name: str, log: str = "", options: tuple[str, ...] = (),
                 source: str = "") -> None:
        self.call = call
        self.status = status
        self.source_name = source_name
        self.log = log
        self.options = options
        self.source = source
        name = getattr(status, "name", str(status))
        super().__init__(f"{call} failed for {source_name}: {name}\n{log.strip()}")

    def dump(self) -> str:
        """The source with line numbers, to read beside the log."""
        lines = self.source.splitlines()
        width = len(str(len(lines)))
        return "\n".join(f"{i + 1:>{width}} | {line}" for i, line in enumerate(lines))


def nvrtc_version() -> tuple[int, int]:
    err, major, minor = nvrtc.nvrtcVersion()
    if err:
        raise NvrtcError("nvrtcVersion", err, "-")
    return int(major), int(minor)


def _ok(result: tuple, call: str, source_name: str):
    if result[0]:
        raise NvrtcError(call, result[0], source_name)
    return result[1] if len(result) == 2 else None


@dataclass(frozen=True)
class Images:
    ptx: bytes
    cubin: bytes | None
    log: str


def compile_source(source: str, source_name: str, arch: str, options: tuple[str, ...] = (),
                   include_dirs: tuple[Path, ...] = (), want_cubin: bool = True) -> Images:
    """Compile for ``arch`` (``sm_90``). With ``want_cubin`` false, compile for ``compute_XY`` only (PTX)."""
    target = arch if want_cubin else arch.replace("sm_", "compute_")
    opts = (f"--gpu-architecture={target}", *options, *(f"--include-path={d}" for d in include_dirs))
    prog = _ok(nvrtc.nvrtcCreateProgram(source.encode(), source_name.encode(), 0, [], []),
               "nvrtcCreateProgram", source_name)
    try:
        encoded = [o.encode() for o in opts]
        status = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)[0]
        log = _log(prog, source_name)
        if status:
            raise NvrtcError("nvrtcCompileProgram", status, source_name, log, opts, source)
        size = _ok(nvrtc.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize", source_name)
        # Mutable buffers only: NVRTC writes into what it is given, and writing into a bytes object corrupts
        # the interpreter (b" " * 1 is CPython's shared one-byte b" ", after which every b" " reads b"\0").
        ptx = bytearray(size)
        _ok(nvrtc.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX", source_name)
        cubin = None
        if want_cubin:
            size = _ok(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize", source_name)
            cubin = bytearray(size)
            _ok(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN", source_name)
            cubin = bytes(cubin)
        return Images(ptx=bytes(ptx).rstrip(b"\0"), cubin=cubin, log=log)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(prog, source_name: str) -> str:
    size = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize", source_name)
    if size <= 1:
        return ""
    buf = bytearray(size)
    _ok(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog", source_name)
    return bytes(buf).rstrip(b"\0").decode(errors="replace")
