"""A machine with nothing on it, for testing devices and transports without a board plugin.

::

    registry = device_registry(MyTransport, MyDevice)     # just these, no plugin discovery
    machine = Machine(BareBoard(), registry=registry, ram_size=1 << 20)
    machine.create_device("my-transport")

``BareBoard`` also works with a discovered registry (``Registry().discover(["device"])``).
"""

from __future__ import annotations

import types
from typing import Any, ClassVar

from arctern.config import BuildConfig
from arctern.hookspecs import hookimpl
from arctern.machine.machine import Machine, MachineType
from arctern.plugins import Registry


class BareBoard(MachineType):
    """RAM and nothing else: no CPU, no kernel; the test creates the devices it exercises."""

    name: ClassVar[str] = "bare-test-board"
    description: ClassVar[str] = "RAM only (tests)"

    def build(self, machine: Machine) -> None:
        """Nothing: the test adds the devices."""

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """No kernel."""


def device_registry(*classes: type, name: str = "test-devices") -> Registry:
    """A strict registry holding only ``classes``, as the devices of one in-process plugin
    (the build configuration is the default one: nothing disabled)."""
    registry = Registry(BuildConfig(), strict=True)
    plugin: Any = types.SimpleNamespace(arctern_devices=hookimpl(lambda: list(classes)))
    registry.register_plugin(plugin, kind="device", name=name)
    return registry
