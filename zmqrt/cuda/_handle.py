"""Ownership of raw driver handles: idempotent close, context manager, finalizer as the safety net.

A subclass sets ``self._handle`` and registers its release function with :meth:`_own`. ``close()`` runs it
once; a release failure warns and never raises, because cleanup runs on error paths and at interpreter exit.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any


def _release(fn: Callable[..., Any], args: tuple, what: str) -> None:
    try:
        result = fn(*args)
        if isinstance(result, tuple) and result and result[0]:
            warnings.warn(f"releasing {what} failed: {result[0]!r}", ResourceWarning, stacklevel=2)
    except Exception as exc:  # never raise from cleanup
        warnings.warn(f"releasing {what} failed: {exc}", ResourceWarning, stacklevel=2)


class OwnedHandle:
    _handle: Any = None
    _finalizer: weakref.finalize | None = None

    def _own(self, handle: Any, release: Callable[..., Any], *args: Any) -> None:
        self._handle = handle
        self._finalizer = weakref.finalize(self, _release, release, args, type(self).__name__)

    @property
    def handle(self) -> Any:
        if self._handle is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Release the handle. Safe to call more than once."""
        fin, self._finalizer = self._finalizer, None
        self._handle = None
        if fin is not None:
            fin()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
