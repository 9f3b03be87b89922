"""virtio-rng (virtio 1.x section 5.4): an entropy source for the guest, as QEMU 7.2 has it.

One requestq of 8 entries. Every buffer the driver makes available is filled
with bytes from the host's ``os.urandom`` (QEMU's default rng-builtin backend
reads the host's getrandom too) and returned with the length written.

Rate limiting is QEMU's: at most ``max-bytes`` bytes per ``period``
milliseconds of virtual time. The defaults (2^63 - 1 bytes per 65536 ms) leave
it off. A period's budget is counted from the first request of the period; when
it is spent, requests wait until the period's timer refills it. The budget is
not migrated (the destination starts a fresh period, as in QEMU), and buffers
left waiting are served when the destination runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

from arctern.errors import MachineError
from arctern.machine.device import prop_int, prop_str
from arctern.machine.vmstate import VMState
from arctern.virtio import (
    VIRTIO_FIELDS,
    RingError,
    SplitVirtqueue,
    VirtioDevice,
    VirtqElement,
    ram_runs,
)
from arctern.virtio.spec import DEVICE_ID_RNG, STATUS_DRIVER_OK

log = logging.getLogger(__name__)

QUEUE_SIZE = 8
INT64_MAX = (1 << 63) - 1
#: Largest budget one request may use (QEMU computes it in an unsigned int).
REQUEST_MAX = 0xFFFFFFFF
#: Random bytes are made and copied this much at a time: a hostile driver's huge
#: buffers cost time, never an allocation their size.
FILL_CHUNK = 1 << 20
NS_PER_MS = 1_000_000


class VirtioRNG(VirtioDevice):
    """``-device virtio-rng-device``: random bytes from the host for the guest."""

    name: ClassVar[str] = "virtio-rng-device"
    description: ClassVar[str] = "virtio entropy source (random bytes from the host)"
    device_id: ClassVar[int] = DEVICE_ID_RNG
    properties = {
        "max-bytes": prop_int(INT64_MAX, bits=64),
        "period": prop_int(1 << 16),
        "rng": prop_str(""),
    }
    vmstate = VMState("virtio-rng", 1, [*VIRTIO_FIELDS])

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.quota_remaining = self.props["max-bytes"]
        self._timer = None
        self._timer_idle = True

    def check_properties(self) -> None:
        p = self.props
        if p["rng"]:
            # No rng-backend objects exist (QEMU's -object rng-random/rng-egd): the
            # default backend, the host's random source, is the only one.
            raise MachineError(f"Device '{p['rng']}' not found")
        if p["period"] <= 0:
            raise MachineError("'period' parameter expects a positive integer")
        if p["max-bytes"] > INT64_MAX:
            raise MachineError("'max-bytes' parameter must be non-negative, and less than 2^63")

    def queue_config(self) -> tuple[int, ...]:
        return (QUEUE_SIZE,)

    def realize(self) -> None:
        self._timer = self.machine.new_timer(self._refill)

    def unrealize(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # --- the driver's side -------------------------------------------------------

    def handle_queue(self, vq: SplitVirtqueue) -> None:
        self._process()

    def status_changed(self, old: int) -> None:
        self._process()  # the driver may have queued buffers before DRIVER_OK

    def vm_state_changed(self, running: bool) -> None:
        # Buffers may wait for a budget or for the machine (after a migration).
        if running:
            self._process()

    # --- serving requests ----------------------------------------------------------

    def _guest_ready(self) -> bool:
        vq = self.queues[0]
        return (
            vq.ready
            and bool(self.status & STATUS_DRIVER_OK)
            and not self.broken
            and self.machine.running
        )

    def _process(self) -> None:
        """Fill what the driver made available, within the period's budget."""
        if not self._guest_ready():
            return
        if self._timer_idle:
            self._timer.mod(self.machine.clock.ns() + self.props["period"] * NS_PER_MS)
            self._timer_idle = False
        vq = self.queues[0]
        budget = min(self.quota_remaining, REQUEST_MAX)
        served = pushed = 0
        try:
            while served < budget:
                elem = vq.pop()
                if elem is None:
                    break
                length = self._fill(elem, budget - served)
                vq.push(elem, length)
                served += length
                pushed += 1
        except RingError as exc:
            self.virtio_error(str(exc))
        self.quota_remaining -= served
        if not self.quota_remaining:
            log.debug("%s: max-bytes reached; requests wait for the next period", self.name)
        if pushed:
            self.notify(vq)

    def _fill(self, elem: VirtqElement, limit: int) -> int:
        """Random bytes into the element's device-writable buffers, at most ``limit``."""
        ram = self.machine.ram
        done = 0
        for offset, view in ram_runs(ram, elem.in_sg):
            if done >= limit:
                break
            run = view[: limit - done]
            for start in range(0, len(run), FILL_CHUNK):
                chunk = run[start : start + FILL_CHUNK]
                chunk[:] = os.urandom(len(chunk))
            ram.mark_written(offset, offset + len(run))
            done += len(run)
        return done

    def _refill(self) -> None:
        """The period ended: a new budget, and the waiting buffers get it."""
        self.quota_remaining = self.props["max-bytes"]
        self._process()
        self._timer_idle = True
