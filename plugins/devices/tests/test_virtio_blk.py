"""virtio-blk over virtio-mmio on real raw and qcow2 images, checked with qemu-img/qemu-io."""

import errno
import json
import struct
import subprocess

import pytest
from arctern_devices.virtio_mmio import CONFIG
from device_harness import destination, migrate_state, open_drive
from ring_driver import MMIODriver

from arctern.errors import BlockError

BASE = 0xFEB00000
RING = 0x100000
SECTOR = 512
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
F_RO = 1 << 5


def header(rtype, sector=0):
    return struct.pack("<IIQ", rtype, 0, sector)


class Disk:
    """A guest's view of one virtio-blk disk: synchronous requests through the ring."""

    def __init__(self, machine, version="legacy", indirect=False, **props):
        mmio_props = {"addr": BASE, "irq": 5, "force-legacy": version == "legacy"}
        self.machine = machine
        self.mmio = machine.create_device("virtio-mmio", **mmio_props)
        self.dev = machine.create_device("virtio-blk-device", **props)
        self.drv = MMIODriver(machine.address_space, BASE)
        features = (1 << 28) | (1 << 29) | (1 << 9) | (1 << 11) | (1 << 13) | (1 << 14)
        if version == "modern":
            features |= 1 << 32
        self.ring = self.drv.init(features, 64, RING)
        self.indirect = indirect

    def submit(self, outs, in_lens):
        sent = self.ring.add(outs, in_lens, indirect=self.indirect)
        self.drv.kick()
        used = self.ring.collect()
        self.drv.ack()
        self.ring.release(sent)
        return sent, used

    def request(self, outs, in_len=0):
        sent, used = self.submit(outs, [in_len, 1] if in_len else [1])
        assert used == [(sent["head"], in_len + 1)]
        status = self.machine.address_space.read_bytes(sent["in"][-1][0], 1)[0]
        data = self.machine.address_space.read_bytes(*sent["in"][0]) if in_len else b""
        return status, data

    def write(self, sector, data, split=1):
        step = len(data) // split
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        return self.request([header(T_OUT, sector), *chunks])[0]

    def read(self, sector, length):
        return self.request([header(T_IN, sector)], length)


@pytest.fixture(params=["raw", "qcow2"])
def image(request, tmp_path):
    path = tmp_path / f"disk.{request.param}"
    subprocess.run(["qemu-img", "create", "-q", "-f", request.param, str(path), "4M"], check=True)
    return request.param, path


def qemu_img_check(path, fmt):
    if fmt == "raw":
        return
    result = subprocess.run(
        ["qemu-img", "check", "--output=json", "-f", fmt, str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "corruptions" not in json.loads(result.stdout)


def qemu_io_read_pattern(path, fmt, offset, length, pattern):
    result = subprocess.run(
        ["qemu-io", "-f", fmt, "-r", "-c", f"read -P {pattern:#x} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "Pattern verification failed" not in result.stdout, (
        result.stdout
    )


@pytest.mark.parametrize("version", ["legacy", "modern"])
@pytest.mark.parametrize("indirect", [False, True])
def test_write_read_back_and_qemu_agrees(machine, image, version, indirect):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    disk = Disk(machine, version, indirect, drive=drive)
    payload = bytes([0xA5]) * 65536
    assert disk.write(16, payload, split=4) == S_OK  # scattered over four buffers
    assert disk.write(8000, bytes([0x5A]) * 4096) == S_OK  # near the end of the disk
    status, data = disk.read(16, 65536)
    assert status == S_OK and data == payload
    assert disk.request([header(T_FLUSH)])[0] == S_OK
    machine.drives[drive].close()
    qemu_img_check(path, fmt)
    qemu_io_read_pattern(path, fmt, 16 * SECTOR, 65536, 0xA5)
    qemu_io_read_pattern(path, fmt, 8000 * SECTOR, 4096, 0x5A)


def test_reads_data_qemu_wrote(machine, image):
    fmt, path = image
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", "write -P 0x3c 131072 8192", str(path)],
        check=True,
        capture_output=True,
    )
    disk = Disk(machine, drive=open_drive(machine, path, fmt))
    status, data = disk.read(256, 8192 + 512)
    assert status == S_OK and data == bytes([0x3C]) * 8192 + bytes(512)


def test_discard_and_write_zeroes(machine, image):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    disk = Disk(machine, "modern", drive=drive)
    assert disk.write(0, bytes([0x11]) * 8192) == S_OK
    zeroes = header(T_WRITE_ZEROES) + struct.pack("<QII", 4, 4, 0)
    assert disk.request([zeroes])[0] == S_OK
    assert disk.read(0, 8192)[1] == bytes([0x11]) * 2048 + bytes(2048) + bytes([0x11]) * 4096
    unmap = header(T_WRITE_ZEROES) + struct.pack("<QII", 0, 2, 1)
    assert disk.request([unmap])[0] == S_OK
    discard = header(T_DISCARD) + struct.pack("<QII", 8, 8, 0)
    assert disk.request([discard])[0] == S_OK
    bad_flags = header(T_DISCARD) + struct.pack("<QII", 8, 8, 1)
    assert disk.request([bad_flags])[0] == S_UNSUPP  # unmap flag is for write-zeroes only
    two_segments = header(T_DISCARD) + struct.pack("<QII", 8, 8, 0) * 2
    assert disk.request([two_segments])[0] == S_UNSUPP
    too_many = header(T_WRITE_ZEROES) + struct.pack("<QII", 0, 4194304, 0)
    assert disk.request([too_many])[0] == S_IOERR
    machine.drives[drive].close()
    qemu_img_check(path, fmt)
    qemu_io_read_pattern(path, fmt, 0, 512, 0)


def test_get_id_and_unsupported_request(machine, image):
    fmt, path = image
    disk = Disk(machine, drive=open_drive(machine, path, fmt), serial="ARCTERN-DISK-0001")
    status, data = disk.request([header(T_GET_ID)], 20)
    assert status == S_OK and data == b"ARCTERN-DISK-0001\0" + bytes(2)
    assert disk.request([header(2)], 16)[0] == S_UNSUPP  # SCSI commands are not served


def test_out_of_range_and_misaligned_requests_fail_with_ioerr(machine, image):
    fmt, path = image
    disk = Disk(machine, drive=open_drive(machine, path, fmt))
    sectors = 4 * 1024 * 1024 // SECTOR
    assert disk.read(sectors - 1, 1024)[0] == S_IOERR
    assert disk.write(sectors, bytes(512)) == S_IOERR
    assert disk.read(0, 100)[0] == S_IOERR  # not a whole number of sectors
    assert disk.read(sectors - 1, 512)[0] == S_OK


def test_read_only_drive_offers_ro_and_fails_writes(machine, image):
    fmt, path = image
    drive = open_drive(machine, path, fmt, read_only=True)
    disk = Disk(machine, drive=drive)
    assert disk.drv.device_features() & F_RO
    assert disk.write(0, bytes([1]) * 512) == S_IOERR
    assert disk.read(0, 512) == (S_OK, bytes(512))


def test_missing_headers_break_the_device(machine, image):
    fmt, path = image
    disk = Disk(machine, drive=open_drive(machine, path, fmt))
    disk.ring.add([b"short"], [1])
    disk.drv.kick()
    assert disk.dev.broken and disk.ring.used_idx() == 0


def test_config_wce_switches_to_writethrough(machine, image, monkeypatch):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    disk = Disk(machine, drive=drive)
    flushes = []
    backend = machine.drives[drive]
    real_flush = backend.flush
    monkeypatch.setattr(backend, "flush", lambda: (flushes.append(1), real_flush()))
    disk.write(0, bytes(512))
    assert flushes == []
    disk.drv.write(CONFIG + 32, 0, size=1)  # writeback = 0
    assert disk.drv.read(CONFIG + 32, 1) == 0
    disk.write(0, bytes(512))
    assert flushes == [1]


class FailingOnce:
    """Fault injection around a real BlockBackend: the next write fails with ENOSPC."""

    def __init__(self, backend):
        self.backend = backend
        self.fail = True

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def pwrite(self, offset, data):
        if self.fail:
            self.fail = False
            raise BlockError("No space left on device") from OSError(errno.ENOSPC, "full")
        self.backend.pwrite(offset, data)


def test_enospc_stops_the_machine_and_the_request_survives_migration(machine, image):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    machine.drives[drive] = FailingOnce(machine.drives[drive])
    disk = Disk(machine, drive=drive)
    disk.ring.add([header(T_OUT, 4), bytes([0x77]) * 1024], [1])
    disk.drv.kick()
    assert machine.runstate == "io-error"
    assert disk.ring.used_idx() == 0 and len(disk.dev.inflight) == 1
    target = destination(machine)
    mmio2 = target.create_device("virtio-mmio", addr=BASE, irq=5)
    dev2 = target.create_device("virtio-blk-device", drive=drive)
    migrate_state(disk.mmio, mmio2)
    migrate_state(disk.dev, dev2)
    assert len(dev2.inflight) == 1
    dev2.machine.drives[drive] = machine.drives[drive].backend
    dev2.backend = dev2.machine.drives[drive]
    target.resume()  # the destination starts running: arctern_guest_state_changed replays
    assert not dev2.inflight and dev2.queues[0].used_idx == 1
    dev2.machine.drives[drive].close()
    qemu_io_read_pattern(path, fmt, 4 * SECTOR, 1024, 0x77)


def test_werror_report_completes_with_ioerr(machine, image):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    machine.drives[drive] = FailingOnce(machine.drives[drive])
    disk = Disk(machine, drive=drive, werror="report")
    assert disk.write(0, bytes(512)) == S_IOERR
    assert machine.runstate != "io-error"
    assert disk.write(0, bytes(512)) == S_OK


def test_bad_properties_are_one_line_errors(machine, image):
    from arctern.errors import MachineError

    fmt, path = image
    machine.create_device("virtio-mmio", addr=BASE, irq=5)
    with pytest.raises(MachineError, match="can't find value 'nope'"):
        machine.create_device("virtio-blk-device", drive="nope")
    with pytest.raises(MachineError, match=r"^drive property not set$"):
        machine.create_device("virtio-blk-device")
    with pytest.raises(MachineError, match=r"\(100\), must be a power of 2 \(max 1024\)"):
        machine.create_device("virtio-blk-device", drive="x", **{"queue-size": 100})
    drive = open_drive(machine, path, fmt)
    machine.create_device("virtio-blk-device", drive=drive)
    machine.create_device("virtio-mmio", addr=BASE + 0x200, irq=6)
    with pytest.raises(MachineError, match=f"Drive '{drive}' is already in use"):
        machine.create_device("virtio-blk-device", drive=drive)
    with pytest.raises(MachineError, match="werror"):
        machine.create_device("virtio-blk-device", drive="x", werror="explode")


def test_cont_after_io_error_replays_the_request(machine, image):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    machine.drives[drive] = FailingOnce(machine.drives[drive])
    disk = Disk(machine, drive=drive, werror="stop")
    sent = disk.ring.add([header(T_OUT, 2), bytes([0x99]) * 512], [1])
    disk.drv.kick()
    assert machine.runstate == "io-error" and disk.ring.used_idx() == 0
    machine.resume()  # cont
    assert machine.running and disk.ring.collect() == [(sent["head"], 1)]
    assert machine.address_space.read_bytes(sent["in"][0][0], 1) == bytes([S_OK])
    assert disk.read(2, 512) == (S_OK, bytes([0x99]) * 512)


def test_disk_reads_land_in_guest_ram_as_dirty_pages(machine, image):
    """Migration sends pages the disk wrote into: a DMA read must mark them dirty."""
    fmt, path = image
    disk = Disk(machine, drive=open_drive(machine, path, fmt))
    assert disk.write(0, bytes([0x42]) * 8192) == S_OK
    sent = disk.ring.add([header(T_IN, 0)], [8192, 1])
    target = sent["in"][0][0]
    list(machine.ram.take_dirty())  # a migration round has just sent everything
    disk.drv.kick()
    assert disk.ring.collect() == [(sent["head"], 8193)]
    dirty = {
        page for first, count in machine.ram.take_dirty() for page in range(first, first + count)
    }
    assert {target >> 12, (target + 8191) >> 12} <= dirty
    assert machine.address_space.read_bytes(target, 8192) == bytes([0x42]) * 8192


@pytest.mark.parametrize("version", ["legacy", "modern"])
def test_resize_interrupts_with_a_config_change_and_the_new_capacity(machine, image, version):
    fmt, path = image
    drive = open_drive(machine, path, fmt)
    disk = Disk(machine, version, drive=drive)
    assert disk.drv.read(CONFIG, 8) == (4 << 20) // SECTOR
    machine.drives[drive].truncate(8 << 20)  # what block_resize does
    assert disk.drv.ack() == 3  # ISR: configuration change, and bit 0 too, as QEMU sets them
    assert disk.drv.read(CONFIG, 8) == (8 << 20) // SECTOR
    assert disk.write((8 << 20) // SECTOR - 8, bytes([0x77]) * 4096) == S_OK
    machine.drives[drive].close()
    qemu_img_check(path, fmt)
    qemu_io_read_pattern(path, fmt, (8 << 20) - 4096, 4096, 0x77)
