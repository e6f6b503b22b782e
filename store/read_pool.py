"""Read-only block stores for an asyncio server: one database connection per executor thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from auditseal.store.blockstore import BlockStore
from auditseal.store.database import Location
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
