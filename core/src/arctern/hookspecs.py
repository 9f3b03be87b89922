"""The contract between the Arctern core and its plugins.

Every hook a plugin may implement is declared here, documented where it is
declared. A plugin is a module (or any object) named by an entry point in one
of the namespaces of :data:`arctern.plugins.KINDS`; it implements hooks by
decorating functions with :data:`hookimpl`::

    from arctern.hookspecs import hookimpl

    @hookimpl
    def arctern_block_drivers():
        return [MyDriver]

All hooks are called with keyword arguments. pluggy lets an implementation
accept only the arguments it needs, so a hook that gains an argument later
breaks no plugin.

Two families of hooks:

* registration hooks return classes implementing a contract (BlockDriver,
  CPU, MachineType, Device, MigrationTransport). The core checks each class
  against its contract (see :mod:`arctern.contract`) and refuses one that
  lacks a required hook, naming the distribution, the class and the hook;
* event hooks let plugins observe the system. Their return values are ignored
  and an exception raised by an observer is logged, never propagated into the
  machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from arctern.block.driver import BlockDriver
    from arctern.cpu.base import CPU
    from arctern.machine.device import Device
    from arctern.machine.machine import MachineType
    from arctern.migration.transport import MigrationTransport

PROJECT = "arctern"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registration hooks -----------------------------------------------------


@hookspec
def arctern_block_drivers() -> list[type[BlockDriver]]:
    """Return the block driver classes this plugin provides.

    A class is either a *format* driver (raw, qcow2: it interprets bytes of a
    child node) or a *protocol* driver (file: it reaches the storage). See
    :class:`arctern.block.driver.BlockDriver` for the callbacks; among the
    required ones is ``invalidate_cache``, which the migration hand-over
    relies on.
    """


@hookspec
def arctern_cpu_models() -> list[type[CPU]]:
    """Return the CPU model classes this plugin provides (see :class:`arctern.cpu.base.CPU`).

    Required hooks include ``get_state``/``set_state`` so that every CPU can be
    migrated.
    """


@hookspec
def arctern_machine_types() -> list[type[MachineType]]:
    """Return the machine types (``-M NAME``) this plugin provides.

    A machine type builds its board from devices it asks the registry for by
    name, exactly as a third-party plugin would.
    """


@hookspec
def arctern_devices() -> list[type[Device]]:
    """Return the device classes (``-device NAME``) this plugin provides."""


@hookspec
def arctern_migration_transports() -> list[type[MigrationTransport]]:
    """Return the migration transports this plugin provides, one per URI scheme."""


# --- event hooks -------------------------------------------------------------


@hookspec
def arctern_machine_created(machine: Any) -> None:
    """A machine has been built (devices realized, kernel loaded), before it first runs."""


@hookspec
def arctern_guest_state_changed(machine: Any, running: bool, reason: str) -> None:
    """The guest started or stopped running, or was reset.

    ``reason`` is QEMU's run-state vocabulary: "running", "paused",
    "postmigrate", "inmigrate", "shutdown", "debug", "finish-migrate", ...
    After a system reset it is "reset" and ``running`` tells whether the
    guest goes on running (QEMU's RESET event).
    """


@hookspec
def arctern_block_io_error(
    machine: Any,
    device: str,
    node_name: str | None,
    operation: str,
    action: str,
    nospace: bool | None,
    reason: str,
) -> None:
    """A device's request to a drive failed; the device is about to apply its error policy.

    Fired by the device itself (``machine.registry.notify``), before the action
    takes effect, so a "stop" is seen before the guest stops; the monitor
    turns it into QEMU's BLOCK_IO_ERROR event. ``device`` is the drive's id
    (``-drive id=``), ``node_name`` its node's name (None when the node has
    none), ``operation`` "read" or "write" (a failed flush counts as a write),
    ``action`` "report" (the guest sees the error), "ignore" or "stop" (the
    machine pauses in run state "io-error"). ``nospace`` says whether the
    error was ENOSPC, or is None when the drive does not track its I/O status
    (QEMU reports it only with a ``stop``/``enospc`` policy). ``reason`` is
    the operating system's error text ("No space left on device").
    """


@hookspec
def arctern_migration_state_changed(machine: Any, status: str) -> None:
    """A migration changed status ("setup", "active", "device", "completed", "failed", ...)."""


@hookspec
def arctern_image_activated(node: Any) -> None:
    """A block node became active: its driver re-read its metadata and it may write."""


@hookspec
def arctern_image_inactivated(node: Any) -> None:
    """A block node became inactive: flushed, marked clean, and it no longer writes."""
