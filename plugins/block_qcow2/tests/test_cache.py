"""The metadata table cache: LRU eviction, write-back order, no lost changes."""

from __future__ import annotations

from arctern_block_qcow2.cache import TableCache


def _cache(capacity: int, events: list):
    disk = {n: [n] for n in range(10)}

    def load(offset):
        events.append(("load", offset))
        return list(disk[offset])

    def store(offset, table):
        events.append(("store", offset))
        disk[offset] = list(table)

    cache = TableCache(capacity, load, store, lambda: events.append(("ordering",)))
    return cache, disk


def _change(cache, offsets, mark: str) -> None:
    for offset in offsets:
        table = cache.get(offset)
        table.append(mark)
        cache.mark_dirty(offset, table)


def test_clean_tables_are_evicted_before_dirty_ones():
    events: list = []
    cache, _ = _cache(2, events)
    _change(cache, (1,), "x")
    cache.get(2)
    cache.get(3)  # evicts 2 (clean), not 1 (dirty, older)
    assert 1 in cache and 2 not in cache and 3 in cache
    assert not [e for e in events if e[0] in ("store", "ordering")]


def test_all_dirty_eviction_writes_after_the_ordering_hook():
    events: list = []
    cache, disk = _cache(2, events)
    _change(cache, (1, 2), "x")
    cache.get(3)
    assert events[2:] == [("load", 3), ("ordering",), ("store", 1), ("store", 2)]
    assert disk[1] == [1, "x"] and disk[2] == [2, "x"]
    assert 1 not in cache and 2 in cache


def test_change_to_a_table_that_left_the_cache_is_not_lost():
    events: list = []
    cache, disk = _cache(2, events)
    table = cache.get(1)
    cache.get(2)
    cache.get(3)  # 1 leaves the cache while a caller still holds it
    table.append("late")
    cache.mark_dirty(1, table)
    assert cache.flush()
    assert disk[1] == [1, "late"]


def test_clear_and_forget_write_nothing():
    events: list = []
    cache, disk = _cache(4, events)
    _change(cache, (1, 2), "dropped")
    cache.forget(1)
    cache.clear()
    assert not cache.flush()
    assert ("store", 1) not in events and ("store", 2) not in events
    assert disk[1] == [1] and disk[2] == [2]
