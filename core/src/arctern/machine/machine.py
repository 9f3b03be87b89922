"""The MachineType contract (``-M NAME``) and the Machine runtime object.

Life of a machine, as arctern-system (or a Python program) drives it::

    m = Machine("microvm", registry=registry, ram_size=64 << 20, options={"acpi": "off"})
    m.set_global("virtio-mmio", "force-legacy", "false")    # -global
    m.add_serial(MemoryChardev())                           # -serial
    m.add_drive("d0", backend)                              # -drive
    m.build()                                               # the board
    m.create_device("virtio-blk-device", drive="d0")        # -device
    m.power_on(kernel="guest.elf", cmdline="")              # reset, -kernel, -append
    m.run()                                                 # until shutdown or exit

The main loop runs CPU slices, then expired timers, character backends and
poll hooks (monitor, migration), so a migration streams while the guest runs.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from arctern.contract import required
from arctern.errors import MachineError, NotFoundError
from arctern.machine.chardev import Chardev
from arctern.machine.clock import Timer, TimerList, VirtualClock
from arctern.machine.device import Bus, Device
from arctern.machine.irq import IRQLine
from arctern.machine.memory import RAM, AddressSpace, IOSpace
from arctern.machine.props import Prop, apply_props

if TYPE_CHECKING:
    from arctern.cpu.base import CPU
    from arctern.plugins import Registry

log = logging.getLogger(__name__)

MiB = 1 << 20
#: Longest the idle loop sleeps without an event, so run_for() deadlines stay responsive.
_IDLE_MAX_S = 0.05
#: Fewest instructions a slice runs, however close the next timer is.
_MIN_SLICE = 1000


class MachineType:
    """A board (``-M NAME``): builds itself from devices it asks the registry for by name."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: The CPU architecture ("i386"); a ``-cpu`` model of another arch is refused.
    arch: ClassVar[str] = ""
    default_cpu: ClassVar[str] = ""
    default_ram_size: ClassVar[int] = 128 * MiB
    #: Guest-physical address where RAM starts (0 on PCs, 0x40000000 on ARM virt).
    ram_base: ClassVar[int] = 0
    #: The most RAM the board can map (checked before anything is allocated); None: no limit.
    max_ram_size: ClassVar[int | None] = None
    #: ``-M NAME,key=value`` options.
    options: ClassVar[dict[str, Prop]] = {}

    def __init__(self, **options: Any) -> None:
        #: Parsed option values, defaults filled in.
        self.opts: dict[str, Any] = apply_props(f"{self.name}-machine", self.options, options)

    @required
    def build(self, machine: Machine) -> None:
        """Create the CPU and the board's devices through ``machine`` (registry by name)."""

    @required
    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """Load ``-kernel`` (with ``-append``) and set the CPU up to enter it.

        Called after every reset, as QEMU reloads its ROMs on system_reset.
        """

    @classmethod
    def builtin_guest(cls, purpose: str) -> Path | None:
        """A prebuilt guest program this board's package ships for ``purpose``, if any.

        Optional (the default ships none). Purposes:

        ``"migration-demo"`` (arctern-demo): a ``-kernel`` for this board with its
        default options and one ``virtio-blk-device``. It keeps writing, reading back
        and checking disk sectors and rewriting RAM until a byte arrives on the first
        serial port (or for N rounds with ``-append rounds=N``), printing
        ``round N: ...`` every 100 rounds on that port; then it checks all it wrote,
        prints ``verified R rounds ...`` (or a line starting with ``FAIL``) and powers
        the machine off (exit status 0) where the board can.
        """
        return None


class Machine:
    """One emulated machine: memory, CPUs, devices, clock and the main loop."""

    #: Guest instructions per CPU slice between two services of timers and I/O.
    slice_budget = 20000

    def __init__(
        self,
        machine_type: MachineType | str,
        *,
        registry: Registry | None = None,
        ram_size: int | None = None,
        cpu: str | None = None,
        options: dict[str, Any] | None = None,
        no_reboot: bool = False,
        no_shutdown: bool = False,
        clock: VirtualClock | None = None,
    ) -> None:
        if registry is None:
            from arctern.plugins import default_registry

            registry = default_registry()
        self.registry = registry
        if isinstance(machine_type, str):
            try:
                cls = registry.machine_type(machine_type)
            except NotFoundError:
                raise MachineError("unsupported machine type") from None
            machine_type = cls(**(options or {}))
        self.machine_type = machine_type
        size = ram_size if ram_size else machine_type.default_ram_size
        limit = machine_type.max_ram_size
        if limit is not None and size > limit:
            raise MachineError(
                f"{machine_type.name}: at most {limit >> 20} MiB of RAM are supported"
            )
        self.ram = RAM(size, base=machine_type.ram_base)
        self.address_space = AddressSpace(self.ram)
        self.io = IOSpace()
        self.cpu_model = cpu or machine_type.default_cpu
        self.cpus: list[CPU] = []
        self.devices: list[Device] = []
        self.buses: list[Bus] = []
        self.drives: dict[str, Any] = {}
        self.chardevs: dict[str, Chardev] = {}
        #: Chardev ids of the serial ports, in -serial order ("serial0", ...).
        self.serial_hds: list[str] = []
        self.globals: dict[str, dict[str, Any]] = {}
        #: Guest time: host time while running, or counted instructions (``-icount``).
        self.clock = clock if clock is not None else VirtualClock()
        self.timers = TimerList(self.clock)
        self.exit_request = False
        self.runstate = "prelaunch"
        self.exit_status: int | None = None
        self.no_reboot = no_reboot
        #: -no-shutdown: a power-off pauses the guest (run state "shutdown") instead of exiting.
        self.no_shutdown = no_shutdown
        self.kernel: str | None = None
        self.cmdline = ""
        self.initrd: str | None = None
        self._gsi: dict[int, IRQLine] = {}
        self._poll_hooks: list[tuple[Callable[[], None], Callable[[], list[int]] | None]] = []
        self._quit = False
        self._reset_requested = False
        self._pace = _Pace()

    # --- configuration -----------------------------------------------------

    def set_global(self, driver: str, prop: str, value: Any) -> None:
        """``-global DRIVER.PROP=VALUE``: a default for every DRIVER created from now on."""
        self.globals.setdefault(driver, {})[prop] = value

    def add_chardev(self, id: str, chardev: Chardev) -> None:
        if id in self.chardevs:
            raise MachineError(f"Duplicate ID '{id}' for chardev")
        chardev.set_quit_handler(lambda: self.request_exit(0))
        self.chardevs[id] = chardev

    def add_serial(self, chardev: Chardev | str) -> str:
        """Add the backend of the next serial port (``-serial``); returns its chardev id.

        ``chardev`` is a backend (named ``serialN``) or the id of one given to
        :meth:`add_chardev` (``-serial chardev:ID``).
        """
        if isinstance(chardev, str):
            if chardev not in self.chardevs:
                raise MachineError(
                    f"could not connect serial device to character backend 'chardev:{chardev}'"
                )
            id = chardev
        else:
            id = f"serial{len(self.serial_hds)}"
            self.add_chardev(id, chardev)
        self.serial_hds.append(id)
        return id

    def add_drive(self, id: str, backend: Any) -> None:
        """Make a BlockBackend available to devices as ``drive=ID``."""
        if id in self.drives:
            raise MachineError(f"Duplicate ID '{id}' for drive")
        self.drives[id] = backend

    def add_bus(self, bus: Bus) -> Bus:
        """A device offers a bus (a virtio-mmio transport offers its virtio-bus)."""
        self.buses.append(bus)
        return bus

    def add_poll_hook(
        self, callback: Callable[[], None], fds: Callable[[], list[int]] | None = None
    ) -> None:
        """Call ``callback()`` between CPU slices (and while paused).

        ``fds()``, if given, lists file descriptors whose readability should
        wake the idle loop at once (a monitor's sockets).
        """
        self._poll_hooks.append((callback, fds))

    def remove_poll_hook(self, callback: Callable[[], None]) -> None:
        self._poll_hooks = [(cb, fds) for cb, fds in self._poll_hooks if cb is not callback]

    # --- building ------------------------------------------------------------

    def build(self) -> None:
        """Let the machine type create the CPU and the board devices."""
        self.machine_type.build(self)
        known = set(self.registry.devices)
        for driver in self.globals:
            if driver not in known:
                log.warning(
                    "global %s.%s has invalid class name", driver, next(iter(self.globals[driver]))
                )

    def create_cpu(self, model: str | None = None) -> CPU:
        """Create the ``-cpu`` model (or ``model``) and add it to ``cpus``."""
        name = model or self.cpu_model
        try:
            cls = self.registry.cpu_model(name)
        except NotFoundError:
            raise MachineError(f"unable to find CPU model '{name}'") from None
        arch = self.machine_type.arch
        if arch and cls.arch and cls.arch != arch:
            raise MachineError(f"CPU model '{name}' is a {cls.arch} CPU, not {arch}")
        cpu = cls(self)
        self.cpus.append(cpu)
        return cpu

    def create_device(
        self, name: str, *, id: str | None = None, bus: str | None = None, **props: Any
    ) -> Device:
        """Create, plug and realize a device by registry name, with ``-global`` defaults."""
        try:
            cls = self.registry.device(name)
        except NotFoundError:
            raise MachineError(f"'{name}' is not a valid device model name") from None
        if id is not None and any(d.id == id for d in self.devices):
            raise MachineError(f"Duplicate ID '{id}' for device")
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            driver = getattr(klass, "name", "")
            if isinstance(klass, type) and issubclass(klass, Device) and driver in self.globals:
                for prop, value in self.globals[driver].items():
                    try:
                        apply_props(name, cls.properties, {prop: value})
                    except MachineError as exc:
                        raise MachineError(
                            f"can't apply global {driver}.{prop}={value}: {exc}"
                        ) from None
                    merged[prop] = value
        merged.update(props)
        device = cls(self, id=id, **merged)
        target = self._find_bus(device, bus) if cls.bus_type or bus else None
        if target is not None:
            target.plug(device)
        try:
            device.realize()
        except BaseException:
            if target is not None:
                target.unplug()
            raise
        self.devices.append(device)
        return device

    def _find_bus(self, device: Device, name: str | None) -> Bus:
        if name is not None:
            for candidate in self.buses:
                if candidate.name == name:
                    return candidate
            raise MachineError(f"Bus '{name}' not found")
        # Like QEMU, the most recently created free bus wins: on microvm the first
        # virtio device lands on the highest virtio-mmio slot.
        for candidate in reversed(self.buses):
            if candidate.type == device.bus_type and candidate.free:
                return candidate
        raise MachineError(f"No '{device.bus_type}' bus found for device '{device.name}'")

    def find_device(self, name: str) -> list[Device]:
        """Devices of registry name ``name``, in creation order."""
        return [d for d in self.devices if d.name == name]

    def gsi(self, n: int) -> IRQLine:
        """Global system interrupt ``n``; the machine type connects these to its controllers."""
        line = self._gsi.get(n)
        if line is None:
            line = self._gsi[n] = IRQLine(f"gsi{n}")
        return line

    def new_timer(self, callback: Callable[[], None]) -> Timer:
        """A timer on the virtual clock, run by the main loop once its deadline passes."""
        return self.timers.new_timer(callback)

    # --- power -------------------------------------------------------------------

    def power_on(
        self, kernel: str | None = None, cmdline: str = "", initrd: str | None = None
    ) -> None:
        """Reset every part, load the kernel, announce the machine (arctern_machine_created).

        ``initrd`` is ``-initrd`` as given (Multiboot: modules, comma-separated).
        """
        self.kernel = kernel
        self.cmdline = cmdline
        self.initrd = initrd
        self._reset_parts()
        self.registry.notify("arctern_machine_created", machine=self)

    def _reset_parts(self) -> None:
        for device in self.devices:
            device.reset()
        for cpu in self.cpus:
            cpu.reset()
        if self.kernel is not None:
            self.machine_type.load_kernel(self, self.kernel, self.cmdline)

    def reset(self) -> None:
        """system_reset: devices, CPUs and the kernel image back to their power-on state.

        As in QEMU, a machine that was not running (paused, shut down with
        -no-shutdown) is then in run state "prelaunch", ready for ``cont``.
        Observers hear ``arctern_guest_state_changed(reason="reset")``.
        """
        self._reset_requested = False
        self._reset_parts()
        if self.runstate not in ("running", "inmigrate", "finish-migrate"):
            self.runstate = "prelaunch"
        self.registry.notify(
            "arctern_guest_state_changed", machine=self, running=self.running, reason="reset"
        )

    def request_reset(self) -> None:
        """The guest asked for a reset (triple fault, reset register); with -no-reboot, exit."""
        if self.no_reboot:
            self.shutdown()
            return
        self._reset_requested = True
        self.exit_request = True

    def request_exit(self, status: int) -> None:
        """Stop the main loop; the process exits with ``status`` (isa-debug-exit)."""
        self.exit_status = status
        self._stop("shutdown")

    def shutdown(self) -> None:
        """The guest powered off (ACPI sleep, -no-reboot reset): exit status 0.

        With ``no_shutdown`` the machine only stops in run state "shutdown";
        a monitor may reset and continue it.
        """
        if self.no_shutdown:
            self.pause("shutdown")
            return
        if self.exit_status is None:
            self.exit_status = 0
        self._stop("shutdown")

    def _stop(self, runstate: str) -> None:
        was_running = self.runstate == "running"
        self.runstate = runstate
        self.clock.pause()
        self.exit_request = True
        self._quit = True
        if was_running:
            self._run_state_changed(False, runstate)

    @property
    def running(self) -> bool:
        return self.runstate == "running"

    def pause(self, reason: str = "paused") -> None:
        """Stop the guest (runstate ``reason``); the loop keeps serving monitor and migration."""
        was_running = self.running
        self.runstate = reason
        self.clock.pause()
        self.exit_request = True
        if was_running:
            self._run_state_changed(False, reason)

    def resume(self) -> None:
        """Run the guest (``cont``)."""
        if self.running:
            return
        if self._quit:
            raise MachineError("the machine has shut down")
        self.runstate = "running"
        self.clock.resume()
        self._run_state_changed(True, "running")

    def _run_state_changed(self, running: bool, reason: str) -> None:
        """Tell the devices (``Device.vm_state_changed``) and the observers of the hook
        ``arctern_guest_state_changed``, in QEMU's order.

        A machine that starts is announced first (QMP's RESUME), then its devices
        start, in creation order; one that stops has its devices stopped, in reverse
        order, before it is announced (STOP). A device may change the run state
        again (a replayed request fails and pauses the machine): the devices not
        told yet then hear only that newer change.
        """
        if running:
            self.registry.notify(
                "arctern_guest_state_changed", machine=self, running=True, reason=reason
            )
        for device in list(self.devices if running else reversed(self.devices)):
            if self.running is not running:
                break
            device.vm_state_changed(running)
        if not running:
            self.registry.notify(
                "arctern_guest_state_changed", machine=self, running=False, reason=reason
            )

    def close(self) -> None:
        """Unrealize devices, close backends and drives; closing twice is harmless.

        Every part is closed even if an earlier one fails (the images must be
        flushed and unlocked whatever a device did); the first error is raised
        at the end.
        """
        self._quit = True
        self.clock.pause()
        steps = [device.unrealize for device in reversed(self.devices)]
        steps += [chardev.close for chardev in self.chardevs.values()]
        steps += [drive.close for drive in self.drives.values()]
        self.devices.clear()
        self.chardevs.clear()
        self.drives.clear()
        first: BaseException | None = None
        for step in steps:
            try:
                step()
            except Exception as exc:
                log.error("closing the machine: %s", exc)
                first = first or exc
        if first is not None:
            raise first

    # --- main loop -------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._quit

    def run(self, *, start: bool = True) -> int | None:
        """Run until the guest shuts down or exits; returns the exit status."""
        return self.run_for(start=start)

    def run_for(
        self,
        seconds: float | None = None,
        *,
        until: Callable[[], bool] | None = None,
        start: bool = True,
    ) -> int | None:
        """Run the main loop for at most ``seconds`` of host time, or until ``until()``.

        ``start`` resumes a machine still in "prelaunch" (``-S`` passes False
        and waits for the monitor's ``cont``). Returns the exit status once
        the machine has finished, else None.
        """
        if start and self.runstate == "prelaunch":
            self.resume()
        end = None if seconds is None else time.monotonic() + seconds
        while not self._quit:
            if until is not None and until():
                break
            if end is not None and time.monotonic() >= end:
                break
            self.iterate(end)
        return self.exit_status

    def iterate(self, end: float | None = None) -> None:
        """One turn of the main loop: due timers, a CPU slice, backends and poll hooks."""
        self.timers.run_expired()  # first: the slice budget then runs up to the next deadline
        executed = 0
        if self.running:
            self.exit_request = False
            budget = self._budget()
            started = time.perf_counter_ns()
            for cpu in self.cpus:
                executed += cpu.run(budget)
            self._pace.measure(executed, time.perf_counter_ns() - started)
            self.clock.account(executed)
        if self._reset_requested:
            self.reset()
        for chardev in list(self.chardevs.values()):
            chardev.poll()
        for callback, _fds in list(self._poll_hooks):
            callback()
        if executed == 0 and not self._quit:
            self._idle(end)

    def _budget(self) -> int:
        """Instructions for this slice: up to the next timer deadline, at the measured pace.

        A slice that overshoots a deadline delays the timer's interrupt; one
        that stops short of it costs a loop turn. The pace (guest instructions
        per host nanosecond) comes from the previous slices.
        """
        deadline = self.timers.next_deadline()
        if deadline is None:
            return self.slice_budget
        if self.clock.counts_instructions:  # exactly up to the deadline: deterministic
            return max(1, min(self.slice_budget, self.clock.instructions_until(deadline)))
        until = self.clock.host_ns_until(deadline)
        return max(_MIN_SLICE, min(self.slice_budget, self._pace.instructions_in(until)))

    def _idle(self, end: float | None) -> None:
        """Nothing to execute: sleep until a timer is due, input arrives, or ``end``."""
        clock = self.clock
        timeout = _IDLE_MAX_S
        deadline = self.timers.next_deadline() if self.running else None
        if deadline is not None:
            sleeps = clock.sleeps_when_idle
            timeout = min(timeout, clock.host_ns_until(deadline) / 1e9 if sleeps else 0.0)
        if end is not None:
            timeout = min(timeout, max(0.0, end - time.monotonic()))
        started = time.monotonic_ns()
        if timeout > 0:
            self._wait(timeout)
        clock.idle(deadline, time.monotonic_ns() - started)

    def _wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early for backend or monitor input."""
        fds = [fd for chardev in self.chardevs.values() for fd in chardev.wait_fds()]
        for _callback, hook_fds in self._poll_hooks:
            if hook_fds is not None:
                fds.extend(hook_fds())
        if not fds:
            time.sleep(timeout)
            return
        try:
            select.select(fds, [], [], timeout)
        except (OSError, ValueError):  # an fd closed under us: poll again next turn
            pass


class _Pace:
    """The CPUs' speed in guest instructions per host nanosecond (a moving average)."""

    def __init__(self) -> None:
        self.per_ns = 0.0  # unknown until the first long enough slice

    def measure(self, executed: int, elapsed_ns: int) -> None:
        if executed >= _MIN_SLICE and elapsed_ns > 0:
            rate = executed / elapsed_ns
            self.per_ns = rate if not self.per_ns else 0.75 * self.per_ns + 0.25 * rate

    def instructions_in(self, host_ns: int) -> int:
        if not self.per_ns:
            return _MIN_SLICE
        return int(host_ns * self.per_ns)
