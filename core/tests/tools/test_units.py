"""Size and time formats of qemu-img/qemu-io (values checked against QEMU 7.2's output)."""

import pytest

from arctern.cli.img_json import dumps
from arctern.cli.img_units import human_size, io_size, io_time, parse_size
from arctern.errors import UsageError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512", 512),
        ("64k", 65536),
        ("64K", 65536),
        ("1M", 1 << 20),
        ("1.5k", 1536),
        ("1.5G", 3 << 29),
        ("2T", 2 << 40),
        ("1E", 1 << 60),
        ("0x1000", 4096),
        ("4096B", 4096),
    ],
)
def test_parse_size_accepts_qemu_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Q", "-1", "1kk", "0x10k", "16E"])
def test_parse_size_refuses_garbage(text):
    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (4096, "4 KiB"),
        (200704, "196 KiB"),
        (1 << 30, "1 GiB"),
        (1572864, "1.5 MiB"),
        (1023 * 1024, "0.999 MiB"),  # >= 1000 of a unit switches to the next one
        (999, "999 B"),
    ],
)
def test_human_size_is_qemus_size_to_str(value, text):
    assert human_size(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 bytes"),
        (32, "32 bytes"),
        (65536, "64 KiB"),
        (1572864, "1.500 MiB"),
        (1 << 30, "1 GiB"),
        (28.063 * (1 << 20), "28.063 MiB"),
    ],
)
def test_io_size_is_qemu_io_cvtstr(value, text):
    assert io_size(value) == text


def test_io_time_formats():
    assert io_time(0.004) == "00.00 sec"
    assert io_time(0.25) == "00.25 sec"
    assert io_time(3.93) == "0:00:03.93"
    assert io_time(3725.5) == "1:02:05.50"
    assert io_time(0.004, fixed=True) == "0:00:00.00"


def test_json_keys_follow_qdict_order():
    # Orders observed in qemu-img 7.2's `info --output=json` and `check --output=json`.
    info = {
        "virtual-size": 1,
        "filename": "a",
        "cluster-size": 2,
        "format": "qcow2",
        "actual-size": 3,
        "dirty-flag": False,
        "backing-filename": "b",
        "full-backing-filename": "b",
        "backing-filename-format": "raw",
    }
    keys = [line.split('"')[1] for line in dumps(info).splitlines()[1:-1]]
    assert keys == [
        "backing-filename-format",
        "virtual-size",
        "filename",
        "cluster-size",
        "format",
        "actual-size",
        "full-backing-filename",
        "backing-filename",
        "dirty-flag",
    ]
    check = {
        "filename": "a",
        "format": "qcow2",
        "check-errors": 0,
        "image-end-offset": 1,
        "leaks": 1,
        "total-clusters": 2,
        "allocated-clusters": 1,
        "compressed-clusters": 1,
    }
    keys = [line.split('"')[1] for line in dumps(check).splitlines()[1:-1]]
    assert keys == [
        "image-end-offset",
        "compressed-clusters",
        "total-clusters",
        "check-errors",
        "leaks",
        "allocated-clusters",
        "filename",
        "format",
    ]


def test_option_strings_as_qemu_opts_reads_them():
    from arctern.cli.img_common import parse_option_string

    assert parse_option_string("cluster_size=4k,compat=0.10") == {
        "cluster_size": "4k",
        "compat": "0.10",
    }
    assert parse_option_string("backing_file=a,,b.img,backing_fmt=raw") == {
        "backing_file": "a,b.img",
        "backing_fmt": "raw",
    }
    assert parse_option_string("help") == {"help": ""}
    with pytest.raises(UsageError, match="Invalid parameter 'lazy'"):
        parse_option_string("lazy")


def test_buffer_comparisons():
    from arctern.cli.img_buffers import filled_with, first_difference, is_zero, same

    big = bytearray(5 << 20)  # longer than the zero chunk it is compared against
    assert is_zero(memoryview(big))
    big[(5 << 20) - 1] = 1
    assert not is_zero(memoryview(big))
    assert not is_zero(memoryview(big)[3 << 20 :])
    assert is_zero(memoryview(big)[: 3 << 20])
    pool = bytearray(b"abcdef") + bytearray(100)
    assert same(pool, memoryview(b"abcdef")) and not same(pool, memoryview(b"abcdeX"))
    assert filled_with(memoryview(b"\x07" * 1000), 7)
    assert not filled_with(memoryview(b"\x07" * 999 + b"\x08"), 7)
    one, two = bytearray(4096), bytearray(4096)
    two[1500] = 1
    assert first_difference(memoryview(one), memoryview(two), 512) == 1024
    assert first_difference(memoryview(one), memoryview(one), 512) == 4096
