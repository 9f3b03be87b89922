"""Declarative device state: save/load round trips, versions, and hostile encodings."""

import struct

import pytest

from arctern.errors import StreamError
from arctern.machine.vmstate import (
    VMState,
    array,
    boolean,
    buffer,
    i32,
    i64,
    struct_list,
    u8,
    u16,
    u32,
    u64,
)
from arctern.machine.vmstate import (
    struct as struct_field,
)


class Regs:
    def __init__(self):
        self.ier = 0
        self.lcr = 0


class Channel:
    def __init__(self):
        self.count = 0
        self.gate = False


class Uart:
    def __init__(self):
        self.regs = Regs()
        self.scratch = 0
        self.counter = 0
        self.offset = 0
        self.deadline = 0
        self.fifo = bytearray()
        self.masks = [0, 0, 0, 0]
        self.enabled = False
        self.channels = [Channel(), Channel()]
        self.divider = 12  # what reset() leaves; added by version 2


REGS = VMState("regs", 1, [u8("ier"), u8("lcr")])
CHANNEL = VMState("channel", 1, [u32("count"), boolean("gate")])
FIELDS = [
    struct_field("regs", REGS),
    u8("regs.lcr"),
    u16("scratch"),
    u64("counter"),
    i32("offset"),
    i64("deadline"),
    buffer("fifo"),
    array("masks", "u8", 4),
    boolean("enabled"),
    struct_list("channels", CHANNEL, Channel),
]
V1 = VMState("uart", 1, FIELDS)
V2 = VMState("uart", 2, [*FIELDS, u16("divider", since=2)])


def busy_uart() -> Uart:
    uart = Uart()
    uart.regs.ier, uart.regs.lcr = 0x0F, 0x83
    uart.scratch, uart.counter, uart.offset, uart.deadline = 0xBEEF, 1 << 40, -7, -(1 << 62)
    uart.fifo = bytearray(b"hello")
    uart.masks = [1, 2, 3, 255]
    uart.enabled = True
    uart.channels = [Channel() for _ in range(3)]
    uart.channels[2].count, uart.channels[2].gate = 65536, True
    uart.divider = 3
    return uart


def test_round_trip_through_bytes_restores_everything():
    source = busy_uart()
    blob = V2.encode(V2.save(source))
    data, version = V2.decode(blob)
    target = Uart()
    fifo = target.fifo
    V2.load(target, data, version)
    assert version == 2
    assert V2.save(target) == V2.save(source)
    assert target.fifo is fifo  # refilled in place: views of it stay valid
    assert [c.count for c in target.channels] == [0, 0, 65536]


def test_older_version_leaves_new_fields_as_reset_left_them():
    blob = V1.encode(V1.save(busy_uart()))
    data, version = V2.decode(blob)
    target = Uart()
    V2.load(target, data, version)
    assert version == 1 and target.divider == 12 and target.scratch == 0xBEEF


def test_newer_and_too_old_versions_are_refused():
    blob = V2.encode(V2.save(busy_uart()))
    with pytest.raises(StreamError, match="version 2 is not supported"):
        V1.decode(blob)
    strict = VMState("uart", 2, V2.fields, minimum_version=2)
    with pytest.raises(StreamError, match="version 1"):
        strict.decode(V1.encode(V1.save(busy_uart())))


def test_state_of_another_device_is_refused():
    other = VMState("pit", 1, [u8("scratch")])
    with pytest.raises(StreamError, match="belongs to 'pit'"):
        V1.decode(other.encode({"scratch": 1}))


def test_every_truncation_is_a_stream_error():
    blob = V2.encode(V2.save(busy_uart()))
    for cut in range(len(blob)):
        with pytest.raises(StreamError):
            V2.decode(blob[:cut])
    with pytest.raises(StreamError, match="unexpected bytes"):
        V2.decode(blob + b"\0")


def test_hostile_counts_allocate_nothing_huge():
    name = b"uart"
    header = bytes([len(name)]) + name + struct.pack("<I", 1)
    with pytest.raises(StreamError, match="truncated"):  # fifo claims 4 GiB
        V1.decode(header + bytes(2 + 1 + 2 + 8 + 4 + 8) + b"\xff\xff\xff\xff")
    ok_until_list = bytes(2 + 1 + 2 + 8 + 4 + 8) + struct.pack("<I", 0) + bytes(4) + b"\x00"
    with pytest.raises(StreamError, match="absurd"):
        V1.decode(header + ok_until_list + b"\xff\xff\xff\x7f")


def test_bad_plain_data_is_checked_before_anything_is_loaded():
    data = V1.save(busy_uart())
    target = Uart()
    for field, value in [("scratch", 1 << 16), ("masks", [1, 2]), ("enabled", 2), ("fifo", "x")]:
        with pytest.raises(StreamError, match=field):
            V1.load(target, {**data, field: value}, 1)
    assert V1.save(target) == V1.save(Uart())
    with pytest.raises(StreamError, match="lacks field counter"):
        V1.load(target, {k: v for k, v in data.items() if k != "counter"}, 1)
