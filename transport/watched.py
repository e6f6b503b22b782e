"""A configuration file that is re-read when it changes, and fails closed.

Credentials files (the client-certificate mapping; the tokens file follows the same rules) are
edited while the server runs: an entry is added or removed without a restart. The file is looked
at at most once per ``interval`` (a ``stat``), and parsed again only when its modification time,
size or inode changed. Once it is missing, unreadable or malformed, the server holds the empty
value (nothing is granted) until the file is fixed, and logs one error line: keeping the previous
contents would keep alive an entry its operator was removing when the edit went wrong.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["WatchedFile"]

T = TypeVar("T")

log = logging.getLogger(__name__)


class WatchedFile(Generic[T]):
    """``load(path)`` of a file, reloaded on change. The first load raises whatever ``load``
    raises; a later failure (one of ``errors``) leaves ``empty`` until the file is fixed."""

    def __init__(
        self,
        path: str | Path,
        load: Callable[[Path], T],
        empty: T,
        errors: tuple[type[Exception], ...],
        *,
        what: str,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.interval = interval
        self._load = load
        self._empty = empty
        self._errors = errors
        self._what = what
        self._clock = clock
        self._value = load(self.path)
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino  # a same-size rewrite within 1 ns: new inode

    def current(self) -> T:
        """The file's value now (after at most one ``stat`` and, if it changed, a reload)."""
        now = self._clock()
        if now - self._checked >= self.interval:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._value = self._load(self.path)
                except self._errors as exc:
                    self._value = self._empty
                    log.error("nothing in %s is granted until it is fixed: %s", self._what, exc)
        return self._value
