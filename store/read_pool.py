"""Read-only block stores for an asyncio server: one database connection per executor thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location, is_url, public_location
from auditseal.store.errors import StoreError

__all__ = ["ReadOnlyStores", "StoreUnavailable"]

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store cannot be opened or read right now: 503."""


class ReadOnlyStores:
    """One read-only BlockStore per executor thread, opened on first use."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._local = threading.local()
        # Every spelling of the location a store error may carry (as given, absolute, the URL
        # without its password), longest first.
        names = {str(location)}
        if is_url(location):
            names.add(public_location(location))
        else:
            names.add(str(Path(location).absolute()))
        self._names = sorted(names, key=len, reverse=True)

    def scrub(self, message: str) -> str:
        """``message`` (a store error's) without the store's path or URL: a server's clients
        need not learn where its files are."""
        for name in self._names:
            message = message.replace(f"{name}: ", "").replace(name, "the store")
        return message

    def _call(self, fn: Callable[[BlockStore], T]) -> T:
        db: BlockStore | None = getattr(self._local, "store", None)
        if db is None:
            try:
                db = self._local.store = BlockStore.open(self.location, readonly=True)
            except StoreError as exc:
                raise StoreUnavailable(str(exc)) from exc
        try:
            return fn(db)
        except db.database_error as exc:
            # The connection may be unusable (file replaced, I/O error): the next call reopens.
            self._local.store = None
            db.close()
            raise StoreUnavailable(str(exc)) from exc

    async def run(self, fn: Callable[[BlockStore], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, self._call, fn)
