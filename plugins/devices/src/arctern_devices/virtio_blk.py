"""virtio-blk (virtio 1.x section 5.2) served by an arctern.block BlockBackend.

Requests are served synchronously when the driver notifies the queue. A
request whose I/O fails is completed with IOERR, ignored, or (``werror=stop``
/ ``rerror=stop``, or ``enospc`` on a full disk) kept *in flight* while the
machine pauses with reason "io-error", as QEMU does. In-flight requests are
part of the device state: after a migration (or ``cont``) they are replayed
from their descriptor chains.
"""

from __future__ import annotations

import errno
import logging
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from arctern.errors import ArcternError, MachineError, StreamError
from arctern.machine.device import prop_bool, prop_choice, prop_int, prop_str
from arctern.machine.vmstate import VMState, struct_list, u8, u16
from arctern.virtio import (
    VIRTIO_FIELDS,
    RingError,
    SplitVirtqueue,
    VirtioDevice,
    VirtqElement,
    bit,
    ram_runs,
    sg_read,
    sg_slice,
    sg_write,
)
from arctern.virtio.spec import DEVICE_ID_BLOCK, F_ANY_LAYOUT, STATUS_DRIVER_OK
from arctern_devices.disk_geometry import guess_geometry

log = logging.getLogger(__name__)

SECTOR = 512
#: Most queues a transport addresses (QEMU's VIRTIO_QUEUE_MAX; QEMU itself aborts above it).
QUEUE_MAX = 1024
#: Largest request in sectors (QEMU's BDRV_REQUEST_MAX_SECTORS).
REQUEST_MAX_SECTORS = 4194303
ID_BYTES = 20

# Feature bits.
F_SEG_MAX = 2
F_GEOMETRY = 4
F_RO = 5
F_BLK_SIZE = 6
F_SCSI = 7
F_FLUSH = 9
F_TOPOLOGY = 10
F_CONFIG_WCE = 11
F_MQ = 12
F_DISCARD = 13
F_WRITE_ZEROES = 14

# Request types and status.
T_IN = 0
T_OUT = 1
T_FLUSH = 4
T_GET_ID = 8
T_DISCARD = 11
T_WRITE_ZEROES = 13
T_BARRIER = 0x80000000
S_OK = 0
S_IOERR = 1
S_UNSUPP = 2
WRITE_ZEROES_FLAG_UNMAP = 1

_OUTHDR = struct.Struct("<IIQ")  # type, ioprio, sector
_DWZ = struct.Struct("<QII")  # sector, num_sectors, flags
# struct virtio_blk_config up to write_zeroes_may_unmap (57 bytes).
_CONFIG = struct.Struct("<QIIHBBIBBHIBBHIIIIIB")
#: Config size as QEMU computes it from the offered features.
_CONFIG_MIN, _CONFIG_DISCARD, _CONFIG_WRITE_ZEROES = 36, 48, 57

ERROR_ACTIONS = ("report", "ignore", "stop", "enospc")


@dataclass
class InflightRequest:
    """A request popped from a queue whose completion is still owed to the driver."""

    queue: int = 0
    head: int = 0


INFLIGHT_VMSTATE = VMState("virtio-blk-request", 1, [u16("queue"), u16("head")])


class _Stop(Exception):
    """An I/O error whose policy is "stop": keep the request and pause the machine."""


def _os_error(exc: BaseException | None) -> OSError | None:
    """The operating system's error behind a block-layer error, if there is one."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class VirtioBlk(VirtioDevice):
    """A virtio block device on a virtio bus (``-device virtio-blk-device,drive=ID``)."""

    name: ClassVar[str] = "virtio-blk-device"
    description: ClassVar[str] = "virtio block device"
    device_id: ClassVar[int] = DEVICE_ID_BLOCK
    properties = {
        "drive": prop_str(""),
        "serial": prop_str(""),
        "werror": prop_choice("enospc", ERROR_ACTIONS),
        "rerror": prop_choice("report", ERROR_ACTIONS),
        "config-wce": prop_bool(True),
        "discard": prop_bool(True),
        "write-zeroes": prop_bool(True),
        "max-discard-sectors": prop_int(REQUEST_MAX_SECTORS),
        "max-write-zeroes-sectors": prop_int(REQUEST_MAX_SECTORS),
        "queue-size": prop_int(256),
        "num-queues": prop_int(1, bits=16),
        "logical_block_size": prop_int(SECTOR),
        "physical_block_size": prop_int(SECTOR),
        "cyls": prop_int(0),
        "heads": prop_int(0),
        "secs": prop_int(0),
    }
    vmstate = VMState(
        "virtio-blk",
        1,
        [*VIRTIO_FIELDS, u8("wce"), struct_list("inflight", INFLIGHT_VMSTATE, InflightRequest)],
    )

    def __init__(self, machine: Any, *, id: str | None = None, **props: Any) -> None:
        super().__init__(machine, id=id, **props)
        self.backend = None
        self.geometry = (0, 0, 0)
        self.original_wce = True
        self.wce = 1
        self.inflight: list[InflightRequest] = []

    def queue_config(self) -> tuple[int, ...]:
        return (self.props["queue-size"],) * self.props["num-queues"]

    def check_properties(self) -> None:
        p = self.props
        if not p["num-queues"]:
            raise MachineError("num-queues property must be larger than 0")
        if p["num-queues"] > QUEUE_MAX:
            raise MachineError(f"num-queues property must be at most {QUEUE_MAX}")
        size = p["queue-size"]
        if size <= 2:
            raise MachineError(f"invalid queue-size property ({size}), must be > 2")
        if size > 1024 or size & (size - 1):
            raise MachineError(
                f"invalid queue-size property ({size}), must be a power of 2 (max 1024)"
            )
        lbs, pbs = p["logical_block_size"], p["physical_block_size"]
        for prop, value in (("logical_block_size", lbs), ("physical_block_size", pbs)):
            if value < SECTOR or value > 32768 or value & (value - 1):
                raise MachineError(
                    f"Property {self.name}.{prop} must be a power of 2 between 512 and 32768"
                )
        if pbs < lbs:
            raise MachineError("physical_block_size must be at least logical_block_size")
        for prop in ("max-discard-sectors", "max-write-zeroes-sectors"):
            if not 0 < p[prop] <= REQUEST_MAX_SECTORS:
                raise MachineError(
                    f"invalid {prop} property ({p[prop]}), must be between 1 and "
                    f"{REQUEST_MAX_SECTORS}"
                )

    def realize(self) -> None:
        drive = self.props["drive"]
        if not drive:
            raise MachineError("drive property not set")
        backend = self.machine.drives.get(drive)
        if backend is None:
            raise MachineError(f"Property '{self.name}.drive' can't find value '{drive}'")
        if any(getattr(other, "backend", None) is backend for other in self.machine.devices):
            raise MachineError(f"Drive '{drive}' is already in use by another device")
        self.backend = backend
        self.original_wce = backend.node.cache.writeback
        self.wce = int(self.original_wce)
        sectors = backend.length // SECTOR
        cyls, heads, secs = guess_geometry(lambda: backend.pread(0, SECTOR), sectors)
        self.geometry = (
            self.props["cyls"] or cyls,
            self.props["heads"] or heads,
            self.props["secs"] or secs,
        )
        backend.resize_listeners.append(self._resized)

    def _resized(self) -> None:
        """block_resize: a config-change interrupt, then the guest reads the new capacity."""
        self.notify_config()

    def unrealize(self) -> None:
        if self.backend is not None and self._resized in self.backend.resize_listeners:
            self.backend.resize_listeners.remove(self._resized)

    def post_load(self) -> None:
        for request in self.inflight:
            if request.queue >= len(self.queues):
                raise StreamError(f"{self.name}: in-flight request on queue {request.queue}")
        super().post_load()

    def reset(self) -> None:
        self.inflight = []
        self.wce = int(self.original_wce)
        super().reset()

    # --- features and config ---------------------------------------------------

    def device_features(self) -> int:
        p = self.props
        features = bit(F_SEG_MAX) | bit(F_GEOMETRY) | bit(F_TOPOLOGY) | bit(F_BLK_SIZE)
        if p["config-wce"]:
            features |= bit(F_CONFIG_WCE)
        if p["discard"]:
            features |= bit(F_DISCARD)
        if p["write-zeroes"]:
            features |= bit(F_WRITE_ZEROES)
        if self.transport is not None and self.transport.legacy:
            features |= bit(F_SCSI)
        if self.original_wce:
            features |= bit(F_FLUSH)
        if self.backend is not None and self.backend.read_only:
            features |= bit(F_RO)
        if p["num-queues"] > 1:
            features |= bit(F_MQ)
        return features

    @property
    def host_features(self) -> int:
        features = super().host_features
        if self.transport is None or self.transport.legacy:
            features &= ~bit(F_ANY_LAYOUT)  # QEMU: a legacy virtio-blk offers SCSI instead
        return features

    def _config_size(self) -> int:
        if self.props["write-zeroes"]:
            return _CONFIG_WRITE_ZEROES
        if self.props["discard"]:
            return _CONFIG_DISCARD
        return _CONFIG_MIN

    def get_config(self) -> bytes:
        p = self.props
        lbs = p["logical_block_size"]
        cyls, heads, secs = self.geometry
        length = self.backend.length
        if length // heads // secs % lbs:
            secs &= ~(lbs // SECTOR - 1)
        exp = (p["physical_block_size"] // lbs).bit_length() - 1
        discard = p["discard"]
        zeroes = p["write-zeroes"]
        config = _CONFIG.pack(
            length // SECTOR,  # capacity
            0,  # size_max
            self.queues[0].num_default - 2,  # seg_max
            cyls,
            heads,
            secs,
            lbs,
            exp,  # physical_block_exp
            0,  # alignment_offset
            0,  # min_io_size
            0,  # opt_io_size
            self.wce,
            0,
            p["num-queues"],
            p["max-discard-sectors"] if discard else 0,
            1 if discard else 0,  # max_discard_seg
            lbs // SECTOR if discard else 0,  # discard_sector_alignment
            p["max-write-zeroes-sectors"] if zeroes else 0,
            1 if zeroes else 0,  # max_write_zeroes_seg
            1 if zeroes else 0,  # write_zeroes_may_unmap
        )
        return config[: self._config_size()]

    def set_config(self, config: bytes) -> None:
        self.wce = 1 if config[32] else 0

    def status_changed(self, old: int) -> None:
        # Without CONFIG_WCE the cache mode follows whether the driver acked FLUSH.
        if self.status & STATUS_DRIVER_OK and not self.has_feature(F_CONFIG_WCE):
            self.wce = int(self.has_feature(F_FLUSH))

    # --- requests ----------------------------------------------------------------

    def handle_queue(self, vq: SplitVirtqueue) -> None:
        if self.inflight:
            return  # stopped on an I/O error: requests wait until the machine resumes
        while True:
            vq.set_notification(False)
            while True:
                elem = vq.pop()
                if elem is None:
                    break
                self.inflight.append(InflightRequest(vq.index, elem.head))
                if not self._serve(vq, elem):
                    return
            vq.set_notification(True)
            if vq.is_empty():
                break

    def _serve(self, vq: SplitVirtqueue, elem: VirtqElement) -> bool:
        """Serve one request; False when it stays in flight (machine stopped)."""
        try:
            status = self._execute(elem)
        except _Stop:
            self.machine.pause("io-error")
            return False
        except RingError:
            self.inflight.pop()
            raise
        self.inflight.pop()
        last_addr, last_len = elem.in_sg[-1]
        self.machine.address_space.write_bytes(last_addr + last_len - 1, bytes((status,)))
        vq.push(elem, elem.in_len)
        self.notify(vq)
        return True

    def _execute(self, elem: VirtqElement) -> int:
        """Run the request and return its status byte (raise _Stop or RingError)."""
        if not elem.out_sg or not elem.in_sg:
            raise RingError("virtio-blk missing headers")
        mem = self.machine.address_space
        out_len = elem.out_len
        if out_len < _OUTHDR.size:
            raise RingError("virtio-blk request outhdr too short")
        rtype, _ioprio, sector = _OUTHDR.unpack(sg_read(mem, sg_slice(elem.out_sg, 0, 16)))
        data_out = sg_slice(elem.out_sg, 16, out_len - 16)
        data_in = sg_slice(elem.in_sg, 0, elem.in_len - 1)
        kind = rtype & ~(T_OUT | T_BARRIER)
        if kind == T_IN:
            if rtype & T_OUT:
                return self._write(sector, data_out)
            return self._read(sector, data_in)
        if kind == T_FLUSH:
            return self._io(lambda: self.backend.flush(), is_read=False)
        if kind == T_GET_ID:
            serial = self.props["serial"].encode()
            size = min(len(serial) + 1, elem.in_len - 1, ID_BYTES)
            sg_write(mem, data_in, (serial + b"\0")[:size])
            return S_OK
        if kind in (T_DISCARD & ~T_OUT, T_WRITE_ZEROES & ~T_OUT):
            dwz_len = out_len - 16
            if not rtype & T_OUT or dwz_len > _DWZ.size:
                return S_UNSUPP
            if dwz_len < _DWZ.size:
                raise RingError("virtio-blk discard/write_zeroes header too short")
            header = _DWZ.unpack(sg_read(mem, data_out))
            return self._discard_or_zeroes(header, (rtype & ~T_BARRIER) == T_WRITE_ZEROES)
        return S_UNSUPP

    def _range_ok(self, sector: int, size: int) -> bool:
        lbs = self.props["logical_block_size"]
        nb_sectors = size // SECTOR
        total = self.backend.length // SECTOR
        return (
            nb_sectors <= REQUEST_MAX_SECTORS
            and not sector & (lbs // SECTOR - 1)
            and not size % lbs
            and sector <= total
            and nb_sectors <= total - sector
        )

    def _read(self, sector: int, sg: list[tuple[int, int]]) -> int:
        size = sum(length for _addr, length in sg)
        if not self._range_ok(sector, size):
            return S_IOERR

        def read() -> None:
            # Straight into guest RAM, a run of contiguous buffers at a time: no copy,
            # and no allocation a hostile request could make huge.
            ram, position = self.machine.ram, sector * SECTOR
            for offset, view in ram_runs(ram, sg):
                try:
                    self.backend.preadinto(position, view)
                finally:
                    ram.mark_written(offset, offset + len(view))
                position += len(view)

        return self._io(read, is_read=True)

    def _write(self, sector: int, sg: list[tuple[int, int]]) -> int:
        size = sum(length for _addr, length in sg)
        if not self._range_ok(sector, size):
            return S_IOERR

        def write() -> None:
            position = sector * SECTOR
            for _offset, view in ram_runs(self.machine.ram, sg):
                self.backend.pwrite(position, view)
                position += len(view)
            if not self.wce:
                self.backend.flush()

        return self._io(write, is_read=False)

    def _discard_or_zeroes(self, header: tuple[int, int, int], zeroes: bool) -> int:
        sector, num_sectors, flags = header
        limit = self.props["max-write-zeroes-sectors" if zeroes else "max-discard-sectors"]
        if num_sectors > limit or not self._range_ok(sector, num_sectors * SECTOR):
            return S_IOERR
        if flags & ~WRITE_ZEROES_FLAG_UNMAP:
            return S_UNSUPP
        offset, length = sector * SECTOR, num_sectors * SECTOR
        if zeroes:
            unmap = bool(flags & WRITE_ZEROES_FLAG_UNMAP)
            return self._io(
                lambda: self.backend.pwrite_zeroes(offset, length, may_unmap=unmap), is_read=False
            )
        if flags & WRITE_ZEROES_FLAG_UNMAP:
            return S_UNSUPP
        return self._io(lambda: self.backend.pdiscard(offset, length), is_read=False)

    def _io(self, operation, *, is_read: bool) -> int:
        """Run a backend operation and apply the rerror/werror policy to a failure."""
        try:
            operation()
        except ArcternError as exc:
            cause = _os_error(exc)
            nospace = cause is not None and cause.errno == errno.ENOSPC
            action = self.props["rerror" if is_read else "werror"]
            if action == "enospc":
                action = "stop" if nospace else "report"
            log.warning("%s: I/O error (%s): %s", self.name, action, exc)
            self._report_io_error(is_read, action, nospace, cause.strerror if cause else str(exc))
            if action == "stop":
                raise _Stop from exc
            return S_OK if action == "ignore" else S_IOERR
        return S_OK

    def _report_io_error(self, is_read: bool, action: str, nospace: bool, reason: str) -> None:
        """Tell observers (the monitor's BLOCK_IO_ERROR) before the action takes effect.

        As QEMU, ``nospace`` is only reported when the drive tracks its I/O status,
        i.e. when some policy may stop the machine.
        """
        tracks_status = self.props["werror"] in ("stop", "enospc") or self.props["rerror"] == "stop"
        self.machine.registry.notify(
            "arctern_block_io_error",
            machine=self.machine,
            device=self.props["drive"],
            node_name=None,  # the block layer does not name its nodes
            operation="read" if is_read else "write",
            action=action,
            nospace=nospace if tracks_status else None,
            reason=reason,
        )

    # --- in-flight requests ---------------------------------------------------------

    def vm_state_changed(self, running: bool) -> None:
        """The machine resumed: replay the requests that stopped it, then the queues."""
        if not running or not self.inflight or self.broken:
            return
        pending, self.inflight = self.inflight, []
        try:
            for i, request in enumerate(pending):
                vq = self.queues[request.queue]
                elem = vq.read_chain(request.head)
                self.inflight.append(request)
                if not self._serve(vq, elem):
                    self.inflight.extend(pending[i + 1 :])
                    return
            for vq in self.queues:
                if vq.ready:
                    self.handle_queue(vq)
        except RingError as exc:
            self.virtio_error(str(exc))
