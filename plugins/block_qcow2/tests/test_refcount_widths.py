"""Refcount entries of every width (1..64 bits): the bulk paths agree with entry access."""

from __future__ import annotations

import random
from array import array

import pytest
from arctern_block_qcow2.refcount import RefblockFormat
from arctern_block_qcow2.refscan import differing, pack, unpack


@pytest.mark.parametrize("order", range(7))
def test_pack_matches_entry_encoding(order):
    fmt = RefblockFormat(order, 512)
    rng = random.Random(order)
    values = array(
        "Q", (rng.randrange(fmt.max + 1) if rng.random() < 0.3 else 0 for _ in range(fmt.entries))
    )
    block = bytearray(512)
    for i, value in enumerate(values):
        fmt.set(block, i, value)
    assert pack(fmt, values) == bytes(block)
    assert unpack(fmt, block) == list(values)
    assert [fmt.get(block, i) for i in range(fmt.entries)] == list(values)
    assert list(differing(fmt, block, values, 1000)) == []
    values[7] = (values[7] + 1) % (fmt.max + 1)
    assert list(differing(fmt, block, values, 1000)) == [(1007, fmt.get(block, 7), values[7])]


@pytest.mark.parametrize("order", range(7))
def test_last_nonzero_and_fill(order):
    fmt = RefblockFormat(order, 512)
    block = bytearray(512)
    assert fmt.last_nonzero(block, 0, fmt.entries) is None
    fmt.fill_ones(block, 3, 9)
    assert [fmt.get(block, i) for i in range(12)] == [0, 0, 0] + [1] * 6 + [0, 0, 0]
    assert fmt.last_nonzero(block, 0, fmt.entries) == 8
    assert fmt.last_nonzero(block, 0, 5) == 4
    assert fmt.last_nonzero(block, 9, fmt.entries) is None
    assert fmt.last_nonzero(block, 2, 3) is None


@pytest.mark.parametrize("order", range(7))
def test_count_nonzero(order):
    fmt = RefblockFormat(order, 512)
    rng = random.Random(order + 10)
    block = bytearray(512)
    expected = 0
    for i in range(fmt.entries):
        if rng.random() < 0.2:
            fmt.set(block, i, rng.randrange(1, fmt.max + 1) if fmt.max > 1 else 1)
            expected += 1
    assert fmt.count_nonzero(block) == expected
