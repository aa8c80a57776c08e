"""The kernel registry: every kernel a server accepts, by wire name, and the sources that must be compiled.

:func:`load_registry` builds it from the builtin kernels (sources in ``ptx/``, see :func:`builtin_ptx_dir`)
plus the user kernel directories (see :mod:`zmqrt.kernels.user`). :meth:`KernelRegistry.get` is the lookup
a task goes through; an unknown name raises ``TaskError(Code.UNKNOWN_KERNEL)``. :meth:`KernelRegistry.sources`
lists each distinct ``.cu`` file once, under a stable id, for the compiler and its cache.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from zmqrt.errors import Code, TaskError
from zmqrt.kernels.builtin import BUILTIN_SOURCES, builtin_specs
from zmqrt.kernels.spec import KernelSpec
from zmqrt.kernels.user import load_user_kernels

__all__ = ["KernelRegistry", "builtin_ptx_dir", "load_registry"]


def builtin_ptx_dir() -> Path:
    """The directory of the builtin ``.cu`` files.

    In a source checkout (or an editable install) that is ``<repo>/ptx``; a regular install ships the same
    files as the package ``zmqrt.ptx`` (``pyproject.toml`` maps ``ptx/`` to it). The checkout wins.
    """
    source_tree = Path(__file__).resolve().parents[2] / "ptx"
    if any(source_tree.glob("*.cu")):
        return source_tree
    try:
        installed = Path(str(importlib.resources.files("zmqrt.ptx")))
    except ModuleNotFoundError:
        installed = None
    if installed is not None and any(installed.glob("*.cu")):
        return installed
    raise FileNotFoundError(f"no kernel sources: neither {source_tree} nor the installed zmqrt.ptx holds *.cu files")


class KernelRegistry:
    """Kernels by wire name. Iteration yields the specs in registration order."""

    def __init__(self, specs: Iterable[KernelSpec] = ()) -> None:
        self._specs: dict[str, KernelSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: KernelSpec) -> None:
        """Register ``spec``; a name already taken raises :class:`ValueError`."""
        existing = self._specs.get(spec.name)
        if existing is not None:
            raise ValueError(
                f"kernel {spec.name!r} from {spec.source_path} is already registered (from {existing.source_path})"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> KernelSpec:
        """The spec for wire name ``name``, or ``TaskError(UNKNOWN_KERNEL)``."""
        try:
            return self._specs[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a malformed task
            raise TaskError(Code.UNKNOWN_KERNEL, f"unknown kernel {name!r}; known: {', '.join(self._specs)}") from None

    def names(self) -> list[str]:
        return list(self._specs)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._specs
        except TypeError:
            return False

    def __iter__(self) -> Iterator[KernelSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def sources(self) -> dict[str, Path]:
        """Each distinct source file once, keyed by its spec's ``source_id`` (e.g. ``"builtin/fft.cu"``).

        Two different files that claim the same id (user directories with the same name) get ``~2``, ``~3``
        suffixes in registration order, so every id is unique and stable for a given configuration.
        """
        by_path: dict[Path, str] = {}
        out: dict[str, Path] = {}
        for spec in self._specs.values():
            path = spec.source_path.resolve()
            if path in by_path:
                continue
            sid = spec.source_id
            suffix = 2
            while sid in out:
                sid = f"{spec.source_id}~{suffix}"
                suffix += 1
            by_path[path] = sid
            out[sid] = path
        return out


def load_registry(user_dirs: Sequence[str | Path] = (), ptx_dir: str | Path | None = None) -> KernelRegistry:
    """The builtin kernels (sources from ``ptx_dir``, default :func:`builtin_ptx_dir`) plus the user kernels
    of each directory in ``user_dirs``. A missing builtin source raises :class:`FileNotFoundError`; a bad
    user spec or a name clash raises :class:`ValueError`."""
    root = Path(ptx_dir) if ptx_dir is not None else builtin_ptx_dir()
    missing = [name for name in BUILTIN_SOURCES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"kernel source directory {root} lacks {', '.join(missing)}")
    registry = KernelRegistry(builtin_specs(root))
    for directory in user_dirs:
        for spec in load_user_kernels(directory):
            registry.add(spec)
    return registry
