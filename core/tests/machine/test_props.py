"""Typed device properties parse what QEMU users type and refuse the rest in QEMU's words."""

import pytest

from arctern.errors import MachineError
from arctern.machine.props import (
    apply_props,
    prop_bool,
    prop_choice,
    prop_int,
    prop_size,
    prop_str,
)

PROPS = {
    "iobase": prop_int(0x501, bits=16),
    "irq": prop_int(-1, signed=True),
    "force-legacy": prop_bool(True),
    "serial": prop_str(None),
    "size": prop_size(0),
    "cache": prop_choice("writeback", ("writeback", "none")),
}


@pytest.mark.parametrize(
    "text, value", [("0xf4", 0xF4), ("244", 244), ("0364", 0o364), ("0", 0), ("0XF4", 0xF4)]
)
def test_integers_are_read_as_strtoll_base_0(text, value):
    assert apply_props("dev", PROPS, {"iobase": text})["iobase"] == value


def test_defaults_fill_what_is_not_given():
    values = apply_props("dev", PROPS, {})
    assert values == {
        "iobase": 0x501,
        "irq": -1,
        "force-legacy": True,
        "serial": None,
        "size": 0,
        "cache": "writeback",
    }


@pytest.mark.parametrize(
    "text, value", [("on", True), ("off", False), ("yes", True), ("false", False)]
)
def test_booleans(text, value):
    assert apply_props("dev", PROPS, {"force-legacy": text})["force-legacy"] is value


@pytest.mark.parametrize("text, value", [("64M", 64 << 20), ("4096", 4096), ("1G", 1 << 30)])
def test_sizes(text, value):
    assert apply_props("dev", PROPS, {"size": text})["size"] == value


@pytest.mark.parametrize(
    "given, message",
    [
        ({"iobase": "zz"}, "Parameter 'iobase' expects integer"),
        ({"iobase": "0x10000"}, "Parameter 'iobase' expects uint16_t"),
        ({"force-legacy": "maybe"}, "Parameter 'force-legacy' expects 'on' or 'off'"),
        ({"size": "1Q"}, "Parameter 'size' expects a non-negative number below 2^64"),
        ({"cache": "bogus"}, "Parameter 'cache' expects 'writeback' or 'none'"),
        ({"foo": "1"}, "Property 'dev.foo' not found"),
    ],
)
def test_bad_values_get_qemus_message(given, message):
    with pytest.raises(MachineError) as info:
        apply_props("dev", PROPS, given)
    assert str(info.value) == message


def test_python_callers_pass_typed_values_and_underscores():
    values = apply_props("dev", PROPS, {"force_legacy": False, "irq": 12})
    assert values["force-legacy"] is False and values["irq"] == 12
    with pytest.raises(MachineError, match="dev.iobase"):
        apply_props("dev", PROPS, {"iobase": -5})
