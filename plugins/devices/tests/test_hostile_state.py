"""Migrated device state from a hostile or mismatched source is refused with StreamError."""

import pytest
from device_harness import destination

from arctern.errors import StreamError


def load(device, data):
    vmstate = type(device).vmstate
    vmstate.load(device, data, vmstate.version)
    device.post_load()


def test_pit_refuses_a_zero_count(machine):
    pit = machine.create_device("i8254")
    data = type(pit).vmstate.save(pit)
    data["channel_state"][0]["count"] = 0
    with pytest.raises(StreamError, match="invalid channel state"):
        load(destination(machine).create_device("i8254"), data)


def test_pit_refuses_a_missing_channel(machine):
    pit = machine.create_device("i8254")
    data = type(pit).vmstate.save(pit)
    del data["channel_state"][2]
    with pytest.raises(StreamError, match="2 pit-channel entries"):
        load(destination(machine).create_device("i8254"), data)


def test_pic_refuses_an_impossible_priority(machine):
    pic = machine.create_device("i8259")
    data = type(pic).vmstate.save(pic)
    data["priority_add"] = 9
    with pytest.raises(StreamError, match="invalid state"):
        load(destination(machine).create_device("i8259"), data)


def test_virtio_refuses_oversized_queues_and_bad_inflight(machine, raw_drive):
    machine.create_device("virtio-mmio", addr=0xFEB00000, irq=5)
    blk = machine.create_device("virtio-blk-device", drive=raw_drive)
    data = type(blk).vmstate.save(blk)
    target = destination(machine)
    target.create_device("virtio-mmio", addr=0xFEB00000, irq=5)
    clone = target.create_device("virtio-blk-device", drive=raw_drive)
    big = {**data, "queue_state": [{**data["queue_state"][0], "num": 4096}]}
    with pytest.raises(StreamError, match="queue size 4096"):
        load(clone, big)
    stray = {**data, "inflight": [{"queue": 3, "head": 0}]}
    with pytest.raises(StreamError, match="queue 3"):
        load(clone, stray)


def test_truncated_stream_is_a_stream_error(machine):
    uart = machine.create_device("isa-serial")
    vmstate = type(uart).vmstate
    blob = vmstate.encode(vmstate.save(uart))
    with pytest.raises(StreamError):
        vmstate.decode(blob[:-3])
