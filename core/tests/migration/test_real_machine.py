"""Migration of a real Machine, each side running its own main loop, with a real UART.

The guest is a small CPU model registered as a plugin: each instruction
stores its step number into a page of RAM and every tenth one prints a
letter on the 16550 UART (waiting for THR empty, as a real driver does); it
paces itself on the virtual clock, so it is still running when it moves.
It is migrated mid-run; what the source printed before and the destination
after must be exactly the output of an unmigrated run, and the destination's
RAM, CPU state and virtual clock must continue the source's.
"""

from __future__ import annotations

import threading

import pytest

from arctern.cpu.base import CPU
from arctern.machine.chardev import MemoryChardev
from arctern.machine.machine import Machine, MachineType
from arctern.machine.memory import PAGE_SHIFT
from arctern.migration.manager import MigrationManager
from arctern.plugins import Registry

STEPS = 3000
STEP_NS = 200_000  # the guest paces itself on the virtual clock: 0.6 s in all
COM1 = 0x3F8
EXPECTED = bytes(ord("a") + i % 26 for i in range(STEPS // 10))


class PrinterCPU(CPU):
    name = "test-printer"
    arch = "test"

    def reset(self) -> None:
        self.step = 0
        self.printed = 0

    def run(self, budget: int) -> int:
        machine = self.machine
        ram, io = machine.ram, machine.io
        pages = ram.size >> PAGE_SHIFT
        done = 0
        while done < min(budget, 64) and not machine.exit_request:
            if self.step >= STEPS:
                machine.request_exit(0)
                break
            if machine.clock.ns() < self.step * STEP_NS:
                break
            if self.step % 10 == 0:
                if not io.read(COM1 + 5, 1) & 0x20:  # LSR: THR not empty yet, retry
                    return done
                io.write(COM1, 1, ord("a") + self.printed % 26)
                self.printed += 1
            offset = (self.step * 7919 % pages) << PAGE_SHIFT
            ram.data[offset : offset + 4] = self.step.to_bytes(4, "little")
            ram.dirty[offset >> PAGE_SHIFT] = 1
            self.step += 1
            done += 1
        return done

    def get_state(self) -> dict:
        return {"step": self.step, "printed": self.printed}

    def set_state(self, state: dict) -> None:
        self.step, self.printed = state["step"], state["printed"]


class PrinterBoard(MachineType):
    name = "test-printer-board"
    arch = "test"
    default_cpu = "test-printer"
    default_ram_size = 2 << 20

    def build(self, machine: Machine) -> None:
        machine.create_cpu()
        machine.create_device("isa-serial", chardev="serial0")

    def load_kernel(self, machine: Machine, path: str, cmdline: str) -> None:
        """The guest program is the CPU model itself."""


@pytest.fixture
def printer_registry(add_target) -> Registry:
    registry = Registry().discover(["block", "migration", "device"])
    add_target(registry, PrinterCPU, PrinterBoard)
    return registry


def _machine(registry: Registry, image: str, *, incoming: bool) -> Machine:
    from arctern.block.image import open_image

    machine = Machine("test-printer-board", registry=registry)
    machine.add_chardev("serial0", MemoryChardev())
    machine.add_drive("disk0", open_image(image, fmt="raw", active=not incoming, registry=registry))
    machine.build()
    machine.power_on()
    return machine


def _run(machine: Machine, until=None) -> threading.Thread:
    thread = threading.Thread(target=machine.run_for, kwargs={"until": until}, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("verify", [False, True], ids=["plain", "verify"])
def test_guest_output_and_state_continue_exactly(printer_registry, image, verify):
    source = _machine(printer_registry, image, incoming=False)
    dest = _machine(printer_registry, image, incoming=True)
    src_mig = MigrationManager(source, printer_registry)
    src_mig.capabilities["verify"] = verify
    dst_mig = MigrationManager(dest, printer_registry)
    dst_mig.start_incoming("tcp:127.0.0.1:0", autostart=True)
    assert dest.runstate == "inmigrate"
    port = dst_mig.incoming.socket_address["port"]

    stop_source = threading.Event()
    started = threading.Event()

    def source_loop_until():
        if source.cpus[0].step >= STEPS // 3 and not started.is_set():
            src_mig.migrate(f"tcp:127.0.0.1:{port}")  # from the loop, as the monitor would
            started.set()
        return stop_source.is_set()

    source.resume()
    source_thread = _run(source, source_loop_until)
    dest_thread = _run(dest)
    dest_thread.join(60)
    stop_source.set()
    source_thread.join(10)

    assert src_mig.query()["status"] == "completed", src_mig.query()
    assert dst_mig.query()["status"] == "completed"
    assert source.runstate == "postmigrate"
    assert dest.exit_status == 0  # the guest finished its program at the destination
    before = bytes(source.chardevs["serial0"].output)
    after = bytes(dest.chardevs["serial0"].output)
    assert before and after
    assert before + after == EXPECTED
    assert source.cpus[0].step < dest.cpus[0].step == STEPS
    assert dest.clock.ns() >= source.clock.ns()
    assert not source.drives["disk0"].active and dest.drives["disk0"].active
    source.close()
    dest.close()
