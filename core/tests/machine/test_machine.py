"""The Machine: devices by name with -global defaults, buses, the main loop, run states."""

from __future__ import annotations

import time
import types
from typing import ClassVar

import pytest

from arctern.config import BuildConfig
from arctern.cpu.base import CPU
from arctern.errors import MachineError
from arctern.hookspecs import hookimpl
from arctern.machine.chardev import MemoryChardev
from arctern.machine.device import Bus, Device, prop_bool, prop_int, prop_str
from arctern.machine.machine import Machine, MachineType
from arctern.machine.vmstate import VMState, u8
from arctern.plugins import Registry


class Port(Device):
    """Writes to its port go to the serial backend; a write of 0xff asks for an exit."""

    name: ClassVar[str] = "test-port"
    properties = {"iobase": prop_int(0x80, bits=16), "chardev": prop_str("serial0")}
    vmstate = VMState("test-port", 1, [u8("last")])

    def realize(self):
        self.machine.io.add(self.props["iobase"], 1, self, self.name)
        self.chardev = self.machine.chardevs.get(self.props["chardev"])

    def reset(self):
        self.last = 0

    def port_read(self, port, size):
        return self.last

    def port_write(self, port, size, value):
        self.last = value
        if value == 0xFF:
            self.machine.request_exit(3)
        elif self.chardev is not None:
            self.chardev.write(bytes([value]))


class Transport(Device):
    name: ClassVar[str] = "test-transport"
    user_creatable: ClassVar[bool] = False
    properties = {"slot": prop_int(0), "legacy": prop_bool(True)}

    def realize(self):
        self.bus = self.machine.add_bus(Bus("test-bus", f"test-bus.{self.props['slot']}", self))

    def reset(self):
        pass


class Disk(Device):
    name: ClassVar[str] = "test-disk"
    bus_type: ClassVar[str | None] = "test-bus"
    properties = {"drive": prop_str(None)}

    def realize(self):
        if self.props["drive"] not in self.machine.drives:
            raise MachineError("drive property not set")

    def reset(self):
        pass


class ScriptCPU(CPU):
    """Runs a list of port writes, one per instruction, then halts."""

    name: ClassVar[str] = "script"
    arch: ClassVar[str] = "test"

    def reset(self):
        self.program = list(self.machine.machine_type.program)
        self.halted = False

    def run(self, budget):
        done = 0
        while done < budget and self.program and not self.machine.exit_request:
            self.machine.io.write(0x80, 1, self.program.pop(0))
            done += 1
        self.halted = not self.program
        self.icount += done
        return done

    def get_state(self):
        return {"program": list(self.program)}

    def set_state(self, state):
        self.program = list(state["program"])


class Board(MachineType):
    name: ClassVar[str] = "board"
    arch: ClassVar[str] = "test"
    default_cpu: ClassVar[str] = "script"
    default_ram_size: ClassVar[int] = 1 << 20
    options = {"slots": prop_int(3)}
    program: ClassVar[list[int]] = list(b"hi\n")

    def build(self, machine):
        machine.create_cpu()
        for slot in range(self.opts["slots"]):
            machine.create_device("test-transport", slot=slot)
        if machine.serial_hds:
            machine.create_device("test-port", chardev=machine.serial_hds[0])

    def load_kernel(self, machine, path, cmdline):
        machine.ram.write(0, cmdline.encode())


@pytest.fixture
def registry():
    events = []
    plugin = types.SimpleNamespace(
        arctern_devices=hookimpl(lambda: [Port, Transport, Disk]),
        arctern_cpu_models=hookimpl(lambda: [ScriptCPU]),
        arctern_machine_types=hookimpl(lambda: [Board]),
        arctern_guest_state_changed=hookimpl(
            lambda machine, running, reason: events.append((running, reason))
        ),
    )
    reg = Registry(BuildConfig(), strict=True)
    reg.register_plugin(
        types.SimpleNamespace(arctern_devices=plugin.arctern_devices), kind="device", name="t"
    )
    reg.register_plugin(
        types.SimpleNamespace(
            arctern_cpu_models=plugin.arctern_cpu_models,
            arctern_machine_types=plugin.arctern_machine_types,
            arctern_guest_state_changed=plugin.arctern_guest_state_changed,
        ),
        kind="target",
        name="t",
    )
    reg.events = events
    return reg


def make(registry, **kw) -> tuple[Machine, MemoryChardev]:
    machine = Machine("board", registry=registry, **kw)
    serial = MemoryChardev()
    machine.add_serial(serial)
    machine.build()
    return machine, serial


def test_guest_runs_to_halt_and_exits_with_its_status(registry):
    machine, serial = make(registry)
    machine.power_on(kernel="k", cmdline="console")
    machine.run_for(5, until=lambda: serial.output.endswith(b"\n"))
    assert serial.output == b"hi\n" and machine.runstate == "running"
    assert machine.ram.read(0, 7) == b"console"
    machine.cpus[0].program = [ord("!"), 0xFF, ord("?")]
    machine.cpus[0].halted = False
    assert machine.run() == 3  # request_exit stops at once: "?" is never written
    assert serial.output == b"hi\n!" and machine.finished
    assert registry.events == [(True, "running"), (False, "shutdown")]
    with pytest.raises(MachineError, match="shut down"):
        machine.resume()


def test_pause_freezes_the_clock_and_resume_continues(registry):
    machine, _serial = make(registry)
    machine.power_on()
    machine.resume()
    machine.run_for(0.02)
    machine.pause()
    frozen = machine.clock.ns()
    machine.run_for(0.03)  # the loop keeps serving while paused
    assert machine.clock.ns() == frozen and machine.runstate == "paused"
    machine.resume()
    machine.run_for(0.02)
    assert machine.clock.ns() > frozen
    assert registry.events == [(True, "running"), (False, "paused"), (True, "running")]


def test_timers_and_poll_hooks_run_between_slices(registry):
    machine, _serial = make(registry)
    machine.power_on()
    calls = []
    machine.add_poll_hook(lambda: calls.append("poll"))
    timer = machine.new_timer(lambda: machine.request_exit(9))
    machine.resume()
    timer.mod(machine.clock.ns() + 10_000_000)
    assert machine.run_for(5) == 9
    assert calls and machine.clock.ns() >= 10_000_000


def test_globals_apply_to_every_device_of_that_name(registry):
    machine = Machine("board", registry=registry, options={"slots": "2"})
    machine.set_global("test-transport", "legacy", "off")
    machine.build()
    transports = machine.find_device("test-transport")
    assert len(transports) == 2 and all(t.props["legacy"] is False for t in transports)
    explicit = machine.create_device("test-transport", slot=9, legacy="on")
    assert explicit.props["legacy"] is True  # -device beats -global


def test_bad_global_is_reported_with_qemus_prefix(registry):
    machine = Machine("board", registry=registry)
    machine.set_global("test-transport", "legacy", "maybe")
    with pytest.raises(MachineError) as info:
        machine.build()
    assert str(info.value) == (
        "can't apply global test-transport.legacy=maybe: Parameter 'legacy' expects 'on' or 'off'"
    )


def test_bus_devices_land_on_the_last_free_bus(registry):
    machine, _serial = make(registry)
    machine.add_drive("d0", object())
    machine.add_drive("d1", object())
    first = machine.create_device("test-disk", drive="d0")
    second = machine.create_device("test-disk", drive="d1", id="disk1")
    assert first.parent_bus.name == "test-bus.2" and second.parent_bus.name == "test-bus.1"
    third = machine.create_device("test-disk", drive="d0", bus="test-bus.0")
    assert third.parent_bus.owner.props["slot"] == 0
    with pytest.raises(MachineError, match="No 'test-bus' bus found for device 'test-disk'"):
        machine.create_device("test-disk", drive="d0")
    with pytest.raises(MachineError, match="Duplicate ID 'disk1' for device"):
        machine.create_device("test-port", id="disk1")


def test_failed_realize_leaves_the_bus_free(registry):
    machine, _serial = make(registry)
    with pytest.raises(MachineError, match="drive property not set"):
        machine.create_device("test-disk")
    assert all(bus.free for bus in machine.buses)
    assert not machine.find_device("test-disk")


@pytest.mark.parametrize(
    "make_it, message",
    [
        (lambda m: m.create_device("nosuch"), "'nosuch' is not a valid device model name"),
        (lambda m: m.create_device("test-port", foo=1), "Property 'test-port.foo' not found"),
        (lambda m: m.create_cpu("pentium9"), "unable to find CPU model 'pentium9'"),
    ],
)
def test_unknown_names_get_qemus_messages(registry, make_it, message):
    machine, _serial = make(registry)
    with pytest.raises(MachineError) as info:
        make_it(machine)
    assert str(info.value) == message


def test_machine_type_options_and_unknown_types(registry):
    with pytest.raises(MachineError, match="unsupported machine type"):
        Machine("nosuch", registry=registry)
    with pytest.raises(MachineError, match="Property 'board-machine.zzz' not found"):
        Machine("board", registry=registry, options={"zzz": "1"})
    machine = Machine("board", registry=registry, ram_size=2 << 20)
    assert machine.ram.size == 2 << 20 and machine.machine_type.opts == {"slots": 3}


def test_guest_reset_request_resets_or_exits_with_no_reboot(registry):
    machine, serial = make(registry)
    machine.power_on()
    machine.resume()
    machine.io.write(0x80, 1, ord("x"))
    machine.request_reset()
    machine.iterate()
    assert machine.find_device("test-port")[0].last != ord("x")  # reset ran
    rebootless, _ = make(registry, no_reboot=True)
    rebootless.power_on()
    rebootless.resume()
    rebootless.request_reset()
    assert rebootless.finished and rebootless.exit_status == 0


def test_gsi_lines_are_shared_per_number(registry):
    machine, _serial = make(registry)
    assert machine.gsi(4) is machine.gsi(4) and machine.gsi(4) is not machine.gsi(5)


def test_slices_end_at_the_next_timer_deadline(registry):
    """A busy CPU must not run far past a due timer: its interrupt would come late."""
    machine, _serial = make(registry)
    machine.power_on()
    cpu = machine.cpus[0]
    budgets = []

    def busy(budget):
        budgets.append(budget)
        time.sleep(budget / 1e7)  # a CPU running 10 million instructions per second
        return budget

    cpu.run = busy
    ticks = []

    def tick():
        ticks.append(machine.clock.ns())
        if len(ticks) < 20:
            timer.mod(machine.clock.ns() + 1_000_000)  # 1 kHz

    timer = machine.new_timer(tick)
    machine.resume()
    timer.mod(machine.clock.ns() + 1_000_000)
    machine.run_for(5, until=lambda: len(ticks) >= 20)
    assert len(ticks) == 20
    # Sized to the 1 ms timer, not 20000 (the last slice has no timer left to wait for).
    assert max(budgets[5:-1]) < machine.slice_budget


def test_close_closes_every_image_even_when_a_device_fails(registry):
    machine, _serial = make(registry)
    closed = []

    class Drive:
        def close(self):
            closed.append(self)

    drive = Drive()
    machine.add_drive("d0", drive)
    port = machine.find_device("test-port")[0]

    def broken_unrealize():
        raise MachineError("the device could not flush")

    port.unrealize = broken_unrealize
    with pytest.raises(MachineError, match="could not flush"):
        machine.close()
    assert closed == [drive] and not machine.drives
    machine.close()  # twice is harmless


def test_icount_timers_fire_after_exactly_the_instructions_they_wait_for(registry):
    from arctern.machine.clock import InstructionClock

    def run_once() -> list[tuple[int, int]]:
        machine = Machine("board", registry=registry, clock=InstructionClock(4, sleep=False))
        machine.build()
        machine.power_on()
        cpu = machine.cpus[0]
        cpu.program = [0x41] * 1000
        seen = []

        def tick():
            seen.append((machine.clock.ns(), 1000 - len(cpu.program)))
            if len(seen) < 5:
                timer.mod(machine.clock.ns() + 37 * 16)  # every 37 instructions

        timer = machine.new_timer(tick)
        timer.mod(37 * 16)
        machine.run_for(5, until=lambda: len(seen) == 5)
        return seen

    first = run_once()
    assert first == [(37 * 16 * n, 37 * n) for n in range(1, 6)]
    assert run_once() == first
