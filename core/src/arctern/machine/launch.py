"""Build a whole machine from one description: what arctern-system does, as a Python API.

::

    from arctern.machine import MemoryChardev
    from arctern.machine.launch import DeviceConfig, DriveConfig, MachineConfig, launch

    serial = MemoryChardev()
    machine = launch(MachineConfig(
        "microvm", machine_options={"acpi": "off"}, kernel="guest.elf", append="quiet",
        drives=[DriveConfig("disk.qcow2", format="qcow2", id="d0")],
        devices=[DeviceConfig("virtio-blk-device", {"drive": "d0"}),
                 DeviceConfig("isa-debug-exit", {"iobase": "0xf4", "iosize": "1"})],
        serials=[serial],
    ))
    status = machine.run()            # or run_for(seconds), pause(), resume()
    print(serial.output.decode())
    machine.close()                   # flushes and closes the images

Every piece may carry ``origin``, the command-line text it came from; errors
then read as QEMU's do: ``-device nosuch: 'nosuch' is not a valid device model name``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arctern.errors import ArcternError, MachineError
from arctern.machine.chardev import Chardev, open_chardev
from arctern.machine.clock import InstructionClock
from arctern.machine.machine import Machine
from arctern.machine.mux import MuxChardev

if TYPE_CHECKING:
    from arctern.plugins import Registry

DRIVE_INTERFACES = ("none", "virtio")
CACHE_MODES = ("writeback", "none", "unsafe", "directsync")


@dataclass
class ChardevConfig:
    """``-chardev BACKEND,id=ID,...``: a backend devices name by id (``chardev=ID``)."""

    id: str
    backend: str | Chardev  # a -serial spelling ("file:PATH", "unix:PATH,server") or a Chardev
    origin: str = ""
    #: ``mux=on``: a serial port and a monitor (``-mon chardev=ID``) may share it.
    mux: bool = False


@dataclass
class DriveConfig:
    """``-drive file=...,format=...,if=...,id=...,cache=...,readonly=on``."""

    file: str
    format: str | None = None  # None: probe, as QEMU does (with its warning)
    interface: str = "none"  # "virtio": also plug a virtio-blk-device on it
    id: str | None = None  # default: IF + index ("none0", "virtio0"), as QEMU names them
    cache: str = "writeback"
    read_only: bool = False
    discard: str = "ignore"
    detect_zeroes: str = "off"
    origin: str = ""


@dataclass
class DeviceConfig:
    """``-device DRIVER,prop=value,...`` (values as text or typed Python values)."""

    driver: str
    props: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    bus: str | None = None
    origin: str = ""


@dataclass
class MachineConfig:
    machine: str
    machine_options: dict[str, Any] = field(default_factory=dict)
    cpu: str | None = None
    ram_size: int | None = None
    kernel: str | None = None
    append: str = ""
    initrd: str | None = None  # Multiboot modules: "FILE ARGS,FILE..." as QEMU's -initrd
    drives: list[DriveConfig] = field(default_factory=list)
    devices: list[DeviceConfig] = field(default_factory=list)
    globals: list[tuple[str, str, Any]] = field(default_factory=list)
    chardevs: list[ChardevConfig] = field(default_factory=list)
    #: ``-serial`` backends: QEMU spellings ("stdio", "file:PATH", "chardev:ID", ...)
    #: or Chardev objects.
    serials: list[str | Chardev] = field(default_factory=list)
    no_reboot: bool = False
    no_shutdown: bool = False
    #: ``-icount shift=N``: guest time counts instructions (2**N ns each); repeatable runs.
    icount_shift: int | None = None
    icount_sleep: bool = True  # idle time passes in host time (False: jump to the next timer)
    #: Other users of the terminal (``-monitor stdio``): a stdio serial port may not share it.
    stdio_users: int = 0
    #: Waiting for an incoming migration: images open inactive, run state "inmigrate".
    incoming: bool = False


@contextmanager
def option_context(text: str) -> Iterator[None]:
    """Prefix an error with the option it came from (``-device foo: ...``)."""
    try:
        yield
    except ArcternError as exc:
        if not text:
            raise
        raise type(exc)(f"{text}: {exc}") from None


def launch(config: MachineConfig, *, registry: Registry | None = None) -> Machine:
    """Build, wire and power on the machine ``config`` describes (not yet running)."""
    machine = Machine(
        config.machine,
        registry=registry,
        ram_size=config.ram_size,
        cpu=config.cpu,
        options=config.machine_options,
        no_reboot=config.no_reboot,
        no_shutdown=config.no_shutdown,
        clock=(
            None
            if config.icount_shift is None
            else InstructionClock(config.icount_shift, sleep=config.icount_sleep)
        ),
    )
    try:
        _configure(machine, config)
    except BaseException:
        machine.close()
        raise
    return machine


def _configure(machine: Machine, config: MachineConfig) -> None:
    for driver, prop, value in config.globals:
        machine.set_global(driver, prop, value)
    _add_backends(machine, config)
    implicit = _add_drives(machine, config)
    machine.build()
    for device in [*implicit, *config.devices]:
        with option_context(device.origin):
            _check_user_creatable(machine, device.driver)
            machine.create_device(device.driver, id=device.id, bus=device.bus, **device.props)
    if config.kernel is None and not config.incoming:
        raise MachineError(
            f"no -kernel given: {machine.machine_type.name} boots a Multiboot kernel image"
        )
    machine.power_on(kernel=config.kernel, cmdline=config.append, initrd=config.initrd)
    if config.incoming:
        machine.runstate = "inmigrate"


def _add_backends(machine: Machine, config: MachineConfig) -> None:
    """-chardev and -serial."""
    stdio = _StdioClaims(config.stdio_users)
    for chardev in config.chardevs:
        with option_context(chardev.origin):
            backend = stdio.open(chardev.backend, chardev.id)
            if backend is None:
                raise MachineError(f"'{chardev.backend}' is not a valid char driver name")
            if chardev.mux:
                backend = MuxChardev(backend, label=chardev.id)
            machine.add_chardev(chardev.id, backend)
    for serial in config.serials:
        with option_context(f"-serial {serial}" if isinstance(serial, str) else ""):
            if isinstance(serial, str) and serial.startswith("chardev:"):
                machine.add_serial(serial.removeprefix("chardev:"))
                continue
            chardev = stdio.open(serial, f"serial{len(machine.serial_hds)}")
        if chardev is not None:
            machine.add_serial(chardev)


def _add_drives(machine: Machine, config: MachineConfig) -> list[DeviceConfig]:
    """Open the -drive images; returns the devices ``if=virtio`` asks for."""
    implicit = []
    counters: dict[str, int] = {}
    for drive in config.drives:
        with option_context(drive.origin):
            drive_id = _open_drive(machine, drive, counters, config.incoming)
        if drive.interface == "virtio":
            implicit.append(
                DeviceConfig("virtio-blk-device", {"drive": drive_id}, origin=drive.origin)
            )
    return implicit


class _StdioClaims:
    """Opens backends, refusing a second user of the terminal as QEMU does."""

    def __init__(self, users: int) -> None:
        self.users = users

    def open(self, backend: str | Chardev, label: str) -> Chardev | None:
        if not isinstance(backend, str):
            return backend
        if backend.removeprefix("mon:") == "stdio":
            self.users += 1
            if self.users > 1:
                raise MachineError("cannot use stdio by multiple character devices")
        return open_chardev(backend, label)


def _check_user_creatable(machine: Machine, driver: str) -> None:
    """Board parts (PIC, PIT, transports) are unknown to -device, as in QEMU."""
    cls = machine.registry.devices.get(driver)
    if cls is None or not cls.user_creatable:
        raise MachineError(f"'{driver}' is not a valid device model name")


def _open_drive(
    machine: Machine, drive: DriveConfig, counters: dict[str, int], incoming: bool
) -> str:
    from arctern.block import open_image

    if drive.cache not in CACHE_MODES:
        raise MachineError("invalid cache option")
    if drive.format is not None and drive.format not in machine.registry.block_drivers:
        raise MachineError(f"Unknown driver '{drive.format}'")
    if drive.interface not in DRIVE_INTERFACES:
        raise MachineError(f"machine type does not support if={drive.interface},bus=0,unit=0")

    index = counters.get(drive.interface, 0)
    counters[drive.interface] = index + 1
    drive_id = drive.id or f"{drive.interface}{index}"
    if drive_id in machine.drives:  # checked before the image is opened and locked
        raise MachineError(f"Duplicate ID '{drive_id}' for drive")
    backend = open_image(
        drive.file,
        fmt=drive.format,
        read_only=drive.read_only,
        active=not incoming,
        cache=drive.cache,
        discard=drive.discard,
        detect_zeroes=drive.detect_zeroes,
        registry=machine.registry,
    )
    machine.add_drive(drive_id, backend)
    return drive_id
