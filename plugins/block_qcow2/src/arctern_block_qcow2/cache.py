"""A write-back LRU cache of metadata tables (L2 tables, refcount blocks).

Tables are keyed by their offset in the image file. Dirty tables reach the
file only through :meth:`TableCache.flush` or eviction, and both call the
``before_store`` hook first: that is where the ordering rules live (the L2
cache writes the refcount blocks and flushes the file before any L2 table
goes out), as in QEMU's qcow2-cache.c dependency mechanism.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TableCache(Generic[T]):
    def __init__(
        self,
        capacity: int,
        load: Callable[[int], T],
        store: Callable[[int, T], None],
        before_store: Callable[[], None] = lambda: None,
    ) -> None:
        self.capacity = max(2, capacity)
        self._load = load
        self._store = store
        self._before_store = before_store
        self._tables: OrderedDict[int, T] = OrderedDict()
        self._dirty: set[int] = set()

    def __contains__(self, offset: int) -> bool:
        return offset in self._tables

    def get(self, offset: int) -> T:
        table = self._tables.get(offset)
        if table is None:
            table = self._load(offset)
            self._insert(offset, table)
        else:
            self._tables.move_to_end(offset)
        return table

    def install(self, offset: int, table: T, *, dirty: bool) -> None:
        """Put a table made in memory (a new L2 table or refcount block) into the cache."""
        self._tables.pop(offset, None)
        self._insert(offset, table)
        if dirty:
            self._dirty.add(offset)

    def mark_dirty(self, offset: int, table: T) -> None:
        """Record that ``table`` (the object got for ``offset``) was changed.

        If the table left the cache meanwhile, the changed object is taken back
        rather than lost.
        """
        if self._tables.get(offset) is not table:
            self._tables.pop(offset, None)
            self._insert(offset, table)
        self._dirty.add(offset)

    def forget(self, offset: int) -> None:
        """Drop a table without writing it (its cluster is being freed)."""
        self._tables.pop(offset, None)
        self._dirty.discard(offset)

    def flush(self) -> bool:
        """Write every dirty table (ordering hook first); True if anything was written."""
        if not self._dirty:
            return False
        self._before_store()
        for offset in sorted(self._dirty):
            self._store(offset, self._tables[offset])
        self._dirty.clear()
        return True

    def write_one(self, offset: int) -> None:
        """Write one table now (after the ordering hook), e.g. a new L2 before its L1 entry."""
        if offset in self._dirty:
            self._before_store()
            self._store(offset, self._tables[offset])
            self._dirty.discard(offset)

    def clear(self) -> None:
        """Drop everything without writing (invalidate_cache, or close of an inactive node)."""
        self._tables.clear()
        self._dirty.clear()

    def _insert(self, offset: int, table: T) -> None:
        if len(self._tables) >= self.capacity:
            self._evict()
        self._tables[offset] = table

    def _evict(self) -> None:
        for offset in self._tables:
            if offset not in self._dirty:
                del self._tables[offset]
                return
        # Every table is dirty: write them all at once (one ordering flush), then evict.
        self.flush()
        self._tables.popitem(last=False)
