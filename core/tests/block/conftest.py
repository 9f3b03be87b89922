"""Fixtures of the block-layer tests: raw/file plus "cowtest", a small overlay format.

"cowtest" exists to test what raw cannot show: backing chains, cached
metadata that invalidate_cache must re-read, and write-back on inactivate.
Layout: a 512-byte header (magic, virtual size, backing file name and
format), an allocation map (one byte per 4 KiB block) at 512, block N's data
at DATA_START + N * 4096. The map is cached and written back on flush.
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from arctern.block.driver import BlockDriver
from arctern.config import BuildConfig
from arctern.errors import ImageFormatError
from arctern.hookspecs import hookimpl
from arctern.plugins import Registry

MAGIC = b"ARCOWTST"
HEADER = struct.Struct(">8sQH H")  # magic, size, len(backing name), len(backing format)
BLOCK = 4096
MAP_START = 512
DATA_START = 1 << 20  # room for the map of a 4 GiB image


class CowTest(BlockDriver):
    name = "cowtest"
    create_options = {"backing_file": "backing file", "backing_fmt": "its format"}
    calls: list[tuple[str, str]] = []  # (callback, filename) across instances, for ordering tests

    @classmethod
    def probe(cls, header: bytes, filename: str) -> int:
        return 100 if header.startswith(MAGIC) else 0

    @classmethod
    def create(cls, file, size, options):
        name = options.get("backing_file", "").encode()
        fmt = options.get("backing_fmt", "").encode()
        file.pwrite(0, memoryview(HEADER.pack(MAGIC, size, len(name), len(fmt)) + name + fmt))
        file.truncate(DATA_START)

    def open(self, options):
        self.calls.append(("open", self.node.filename))
        self._read_metadata()

    def _read_metadata(self):
        header = bytearray(512)
        self.node.file.pread(0, memoryview(header))
        magic, self.size, name_len, fmt_len = HEADER.unpack_from(header)
        if magic != MAGIC:
            raise ImageFormatError(f"'{self.node.filename}' is not a cowtest image")
        names = header[HEADER.size : HEADER.size + name_len + fmt_len].decode()
        self.backing_filename = names[:name_len] or None
        self.backing_format = names[name_len:] or None
        self.map = bytearray(-(-self.size // BLOCK))
        self.node.file.pread(MAP_START, memoryview(self.map))
        self.dirty = False

    def close(self):
        self.calls.append(("close", self.node.filename))
        if self.node.active and not self.node.read_only:
            self._write_map()

    def _write_map(self):
        if self.dirty:
            self.node.file.pwrite(MAP_START, memoryview(self.map))
            self.dirty = False

    def getlength(self):
        return self.size

    def _read_below(self, offset, buf):
        backing = self.node.backing
        n = 0 if backing is None else max(0, min(len(buf), backing.getlength() - offset))
        if n:
            backing.pread(offset, buf[:n])
        buf[n:] = bytes(len(buf) - n)

    def pread(self, offset, buf):
        pos = 0
        while pos < len(buf):
            block, within = divmod(offset + pos, BLOCK)
            n = min(BLOCK - within, len(buf) - pos)
            if self.map[block]:
                self.node.file.pread(DATA_START + block * BLOCK + within, buf[pos : pos + n])
            else:
                self._read_below(offset + pos, buf[pos : pos + n])
            pos += n

    def pwrite(self, offset, data):
        pos = 0
        while pos < len(data):
            block, within = divmod(offset + pos, BLOCK)
            n = min(BLOCK - within, len(data) - pos)
            if not self.map[block]:
                whole = bytearray(BLOCK)
                self._read_below(block * BLOCK, memoryview(whole))
                whole[within : within + n] = data[pos : pos + n]
                self.node.file.pwrite(DATA_START + block * BLOCK, memoryview(whole))
                self.map[block] = 1
                self.dirty = True
            else:
                self.node.file.pwrite(DATA_START + block * BLOCK + within, data[pos : pos + n])
            pos += n

    def flush(self):
        self._write_map()
        self.node.file.flush()

    def invalidate_cache(self):
        self.calls.append(("invalidate_cache", self.node.filename))
        self._read_metadata()

    def inactivate(self):
        self.calls.append(("inactivate", self.node.filename))
        self.flush()

    def truncate(self, size, *, preallocation="off"):
        header = bytearray(512)
        self.node.file.pread(0, memoryview(header))
        struct.pack_into(">Q", header, 8, size)
        self.node.file.pwrite(0, memoryview(header))
        self.size = size
        self.map.extend(bytes(-(-size // BLOCK) - len(self.map)))


class _Plugin:
    def __init__(self, *classes):
        self.classes = list(classes)

    @hookimpl
    def arctern_block_drivers(self):
        return self.classes


def make_registry(*extra: type[BlockDriver]) -> Registry:
    """raw and file from the installed plugin, plus cowtest and ``extra`` drivers."""
    names = {"raw", "cowtest", *(cls.name for cls in extra)}
    registry = Registry(BuildConfig(enable={"block": names}), strict=True).discover(["block"])
    registry.register_plugin(_Plugin(CowTest, *extra), kind="block", name="cowtest")
    return registry


@pytest.fixture
def registry() -> Registry:
    CowTest.calls.clear()
    return make_registry()


@pytest.fixture
def cowtest_class() -> type[CowTest]:
    return CowTest


@pytest.fixture(name="make_registry")
def make_registry_fixture():
    return make_registry


@pytest.fixture(name="qemu_io_holding")
def qemu_io_holding_fixture():
    return qemu_io_holding


def qemu_io_read(path: str, fmt: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``qemu-io -f FMT ARGS -c 'read 0 512' PATH`` (does it get to open the image?)."""
    return subprocess.run(
        ["qemu-io", "-f", fmt, *args, "-c", "read 0 512", path],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(name="qemu_io_read")
def qemu_io_read_fixture():
    return qemu_io_read


@pytest.fixture(name="lock_bytes")
def lock_bytes_fixture():
    return lock_bytes


@contextmanager
def qemu_io_holding(path: str, *args: str) -> Iterator[subprocess.Popen]:
    """A qemu-io process that keeps ``path`` open (interactive, fed by a pipe) until exit."""
    proc = subprocess.Popen(
        ["qemu-io", *args, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_locks(path, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.communicate(b"quit\n", timeout=10)


def _wait_for_locks(path: str, proc: subprocess.Popen) -> None:
    """Until qemu-io holds a lock on ``path`` (or has died)."""
    inode = os.stat(path).st_ino
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"qemu-io exited early: {proc.stdout.read().decode()}")
        if any(f":{inode} " in line for line in held_locks()):
            return
        time.sleep(0.02)
    raise AssertionError("qemu-io did not lock the image in time")


def held_locks() -> list[str]:
    with open("/proc/locks") as f:
        return [line for line in f if "OFDLCK" in line]


def lock_bytes(path: str) -> list[int]:
    """The bytes of ``path`` that some open file holds an OFD lock on, sorted."""
    st = os.stat(path)
    found = []
    for line in held_locks():
        fields = line.split()
        dev_inode, start, end = fields[5], fields[6], fields[7]
        if int(dev_inode.rsplit(":", 1)[1]) == st.st_ino:
            found.extend(range(int(start), int(end) + 1))
    return sorted(found)
