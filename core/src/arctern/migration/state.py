"""The non-RAM state of a machine as stream sections, and its digest for ``verify``.

Each CPU travels as its ``get_state()`` (plain data), each device with a
``vmstate`` as that description's binary encoding, the virtual clock as its
``get_state()``, and the drives as their names and sizes, so that a
destination built with other disks refuses the stream instead of running a
guest on the wrong image.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from arctern.errors import ArcternError, MigrationError, StreamError
from arctern.migration import stream as fmt

log = logging.getLogger(__name__)


def device_keys(machine: Any) -> list[tuple[str, Any]]:
    """(section name, device) of every device with migratable state, in a stable order.

    A device's ``id`` names it when it has one; otherwise its type name and its
    rank among devices of that type (both sides are built from the same
    command line, as with QEMU).
    """
    seen: dict[str, int] = {}
    keys = []
    for device in getattr(machine, "devices", ()):
        if getattr(device, "vmstate", None) is None:
            continue
        if getattr(device, "id", None):
            key = f"id:{device.id}"
        else:
            rank = seen.get(device.name, 0)
            seen[device.name] = rank + 1
            key = f"{device.name}.{rank}"
        keys.append((key, device))
    return keys


def cpu_payloads(machine: Any) -> list[tuple[str, bytes]]:
    return [(f"cpu{i}", fmt.encode_plain(cpu.get_state())) for i, cpu in enumerate(machine.cpus)]


def device_payloads(machine: Any) -> list[tuple[str, bytes]]:
    payloads = []
    for key, device in device_keys(machine):
        vmstate = device.vmstate
        payloads.append((key, bytes(vmstate.encode(vmstate.save(device)))))
    return payloads


def drive_table(machine: Any) -> dict[str, int]:
    return {
        name: backend.length for name, backend in sorted(getattr(machine, "drives", {}).items())
    }


def state_sections(machine: Any) -> list[bytes]:
    """CPU, device and clock sections of a stopped machine, each framed as one bytes object."""
    pieces = [b"".join(fmt.section(fmt.CPU, name, data)) for name, data in cpu_payloads(machine)]
    pieces += [
        b"".join(fmt.section(fmt.DEVICE, name, data)) for name, data in device_payloads(machine)
    ]
    clock = getattr(machine, "clock", None)
    if clock is not None:
        pieces.append(
            b"".join(fmt.section(fmt.CLOCK, "clock", fmt.encode_plain(clock.get_state())))
        )
    return pieces


def digest(machine: Any) -> bytes:
    """What ``verify`` compares: RAM, then each CPU and device state as the stream carries it."""
    h = hashlib.sha256(machine.ram.data)
    for name, data in cpu_payloads(machine) + device_payloads(machine):
        h.update(name.encode() + b"\0")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


#: QEMU's RunState names: what a source may have been in when it stopped for switchover.
RUN_STATES = frozenset(
    (
        "debug",
        "inmigrate",
        "internal-error",
        "io-error",
        "paused",
        "postmigrate",
        "prelaunch",
        "finish-migrate",
        "restore-vm",
        "running",
        "save-vm",
        "shutdown",
        "suspended",
        "watchdog",
        "guest-panicked",
        "colo",
    )
)


class StateCollector:
    """Destination side: keeps the non-RAM sections until END, then applies them at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.cpus: dict[str, Any] = {}
        self.devices: dict[str, bytes] = {}
        self.clock: Any = None
        self.global_state: dict[str, Any] = {}
        self.drives: dict[str, int] | None = None
        self.verify: bytes | None = None

    def take(self, sec: fmt.Section) -> None:
        if sec.kind == fmt.GLOBAL:
            state = fmt.decode_plain(sec.payload, "global")
            if not isinstance(state, dict):
                raise StreamError(f"migration stream from {self.source}: bad global state")
            self.global_state.update(state)
        elif sec.kind == fmt.CPU:
            self.cpus[sec.name] = fmt.decode_plain(sec.payload, sec.name)
        elif sec.kind == fmt.DEVICE:
            self.devices[sec.name] = bytes(sec.payload)
        elif sec.kind == fmt.CLOCK:
            self.clock = fmt.decode_plain(sec.payload, "clock")
        elif sec.kind == fmt.BLOCK:
            drives = fmt.decode_plain(sec.payload, "block")
            if not isinstance(drives, dict) or not all(
                isinstance(size, int) for size in drives.values()
            ):
                raise StreamError(f"migration stream from {self.source}: bad drive table")
            self.drives = drives
        elif sec.kind == fmt.VERIFY:
            self.verify = bytes(sec.payload)

    def check_machine(self, machine: Any) -> None:
        """Refuse a stream made for another machine (RAM size, drives) before loading RAM."""
        size = self.global_state.get("ram-size")
        if size != machine.ram.size:
            raise MigrationError(
                f"migration stream from {self.source} is for {size} bytes of RAM; "
                f"this machine has {machine.ram.size} (use the same -m on both sides)"
            )
        if self.drives is not None:
            mine = drive_table(machine)
            if set(mine) != set(self.drives):
                raise MigrationError(
                    f"migration stream from {self.source} has drives "
                    f"{sorted(self.drives) or 'none'}; this machine has {sorted(mine) or 'none'}"
                )

    def runstate(self) -> str:
        """The source's run state before switchover, as QEMU's global state carries it."""
        state = self.global_state.get("runstate")
        if state not in RUN_STATES:
            raise StreamError(f"migration stream from {self.source}: bad run state {state!r}")
        return state

    def apply(self, machine: Any) -> None:
        """Load CPU, device and clock state into a stopped machine (main thread).

        Every part is loaded before any device's ``post_load`` runs, so a
        device re-raising its interrupt line finds the interrupt controller
        already loaded; :meth:`finish` runs them. Between the two the machine
        holds exactly the state that travelled, which is what ``verify``
        compares. The state comes from another process: anything a part
        raises while loading it becomes one StreamError naming that part,
        never a crash of the main loop.
        """
        cpus = machine.cpus
        if len(self.cpus) != len(cpus):
            raise MigrationError(
                f"migration stream from {self.source} carries {len(self.cpus)} CPUs; "
                f"this machine has {len(cpus)}"
            )
        for i, cpu in enumerate(cpus):
            state = self.cpus.get(f"cpu{i}")
            if state is None:
                raise MigrationError(f"migration stream from {self.source} lacks cpu{i}")
            with self._loading(f"cpu{i}"):
                cpu.set_state(state)
        keys = device_keys(machine)
        missing = sorted({k for k, _ in keys} ^ set(self.devices))
        if missing:
            raise MigrationError(
                f"migration stream from {self.source} and this machine disagree on the "
                f"devices {', '.join(missing)} (build both sides with the same options)"
            )
        for key, device in keys:
            with self._loading(f"device {key}"):
                data, version = device.vmstate.decode(self.devices[key])
                device.vmstate.load(device, data, version)
        if self.clock is not None and getattr(machine, "clock", None) is not None:
            with self._loading("the virtual clock"):
                machine.clock.set_state(self.clock)
        log.debug("loaded state of %d CPUs and %d devices", len(cpus), len(keys))

    def finish(self, machine: Any) -> None:
        """Run every device's ``post_load`` (re-derive caches, re-raise interrupt lines)."""
        for key, device in device_keys(machine):
            post_load = getattr(device, "post_load", None)
            if post_load is not None:
                with self._loading(f"device {key}"):
                    post_load()

    @contextlib.contextmanager
    def _loading(self, part: str) -> Iterator[None]:
        try:
            yield
        except ArcternError:
            raise
        except Exception as exc:
            log.debug("loading %s failed", part, exc_info=True)
            raise StreamError(
                f"migration stream from {self.source}: state of {part} does not fit "
                f"this machine ({type(exc).__name__}: {exc})"
            ) from None
