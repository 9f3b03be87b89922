"""Damaged and hostile qcow2 images through every arctern-img subcommand and arctern-io.

Each image is fed to all commands in a child process limited to 1 GiB of
address space and 60 seconds: a command may fail, but only with clear
``arctern-img:``/``arctern-io:`` lines, never a traceback, an internal error,
a hang or a huge allocation.
"""

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("hostile_runner.py")
MEMORY_LIMIT = 1 << 30

L1_OFFSET = 0x30000
L2_OFFSET = 0x40000  # qemu-img's layout after one 64 KiB write at offset 0
DATA_OFFSET = 0x50000


def put(fmt, offset, value):
    def mutate(data: bytearray) -> bytearray:
        struct.pack_into(fmt, data, offset, value)
        return data

    return mutate


def truncate(size):
    return lambda data: data[:size]


def backing_name(offset, length):
    def mutate(data: bytearray) -> bytearray:
        struct.pack_into(">QI", data, 8, offset, length)
        return data

    return mutate


MUTATIONS = {
    "version 5": put(">I", 4, 5),
    "cluster_bits 40": put(">I", 20, 40),
    "cluster_bits 8": put(">I", 20, 8),
    "size 2^62": put(">Q", 24, 1 << 62),
    "l1_size absurd": put(">I", 36, 0x7FFFFFFF),
    "l1 past end of file": put(">Q", 40, 1 << 40),
    "l1 unaligned": put(">Q", 40, L1_OFFSET + 1),
    "refcount table past end": put(">Q", 48, 1 << 50),
    "refcount table unaligned": put(">Q", 48, 0x10008),
    "refcount_table_clusters absurd": put(">I", 56, 0xFFFFFFFF),
    "snapshots absurd": lambda d: put(">Q", 64, 1 << 44)(put(">I", 60, 0xFFFFFFFF)(d)),
    "unknown incompatible feature": put(">Q", 72, 1 << 40),
    "refcount_order 7": put(">I", 96, 7),
    "header_length 5": put(">I", 100, 5),
    "backing name past end": backing_name(1 << 40, 100),
    "backing name 4 GiB": backing_name(0x200, 0xFFFFFFFF),
    "l2 table past end": put(">Q", L1_OFFSET, (1 << 63) | (1 << 45)),
    "l2 table unaligned": put(">Q", L1_OFFSET, (1 << 63) | (L2_OFFSET + 8)),
    "data cluster past end": put(">Q", L2_OFFSET, (1 << 63) | (1 << 45)),
    "compressed cluster garbage": put(">Q", L2_OFFSET, (1 << 62) | 0x60000),
    "truncated header": truncate(60),
    "truncated before l1": truncate(L1_OFFSET - 4096),
    "truncated data": truncate(DATA_OFFSET + 100),
    "refcount block zeroed": lambda d: d[:0x20000] + bytes(65536) + d[0x30000:],
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A small qcow2 made by qemu-img with one data cluster at guest offset 0."""
    path = tmp_path_factory.mktemp("pristine") / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "4M"], check=True)
    subprocess.run(
        ["qemu-io", "-c", "write -P 7 0 64k", path], check=True, stdout=subprocess.DEVNULL
    )
    data = path.read_bytes()
    assert struct.unpack_from(">Q", data, 40)[0] == L1_OFFSET
    assert struct.unpack_from(">Q", data, L1_OFFSET)[0] & ~(1 << 63) == L2_OFFSET
    return data


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_all(image: Path, workdir: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, RUNNER, image, workdir],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def assert_clean_failures(results: dict) -> None:
    for command, (rc, out, err) in results.items():
        assert "Traceback" not in out + err, (command, err)
        assert "internal error" not in err, (command, err)
        assert "out of memory" not in err, (command, err)
        if rc != 0 and command.startswith("io "):
            # qemu-io reports a failed command on stdout: "read failed: <why>"
            assert "failed: " in out or err.startswith("arctern-io: "), (command, out, err)
        elif rc not in (0, 2, 3):
            assert err.startswith("arctern-img: "), (command, rc, out, err)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_hostile_image_gets_clear_errors(tmp_path, pristine, name):
    image = tmp_path / "hostile.qcow2"
    image.write_bytes(bytes(MUTATIONS[name](bytearray(pristine))))
    results = run_all(image, tmp_path)
    assert_clean_failures(results)
    opened = results["img info {i}"]
    if opened[0] != 0:
        assert opened[2].startswith("arctern-img: Could not open "), opened
    if name in COMPARE_EXIT:  # 3: allocation status unreadable, 4: data unreadable
        rc, _, err = results["img compare {i} {i}"]
        assert (rc, err.split(" for ")[0].split(" of ")[0]) == COMPARE_EXIT[name]


COMPARE_EXIT = {
    "l2 table past end": (3, "arctern-img: Sector allocation test failed"),
    "compressed cluster garbage": (4, "arctern-img: Error while reading offset 0"),
}


def test_backing_chain_loop_is_refused(tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    for image, backing in ((a, b), (b, a)):
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-u",
                "-b",
                backing.name,
                "-F",
                "qcow2",
                image,
                "1M",
            ],
            check=True,
        )
    results = run_all(a, tmp_path)
    assert_clean_failures(results)
    for command in (
        "img info --output=json --backing-chain {i}",
        "img map {i}",
        "img convert -O raw {i} {d}/out.raw",
    ):
        rc, _, err = results[command]
        assert rc == 1 and err.startswith("arctern-img: "), (command, err)


def test_pristine_image_passes_everything(tmp_path, pristine):
    image = tmp_path / "base.qcow2"
    image.write_bytes(pristine)
    results = run_all(image, tmp_path)
    assert_clean_failures(results)
    failed = {cmd: r for cmd, r in results.items() if r[0] != 0}
    assert not failed
    assert (tmp_path / "out.raw").read_bytes()[:65537] == b"\x07" * 65536 + b"\0"
    assert shutil.which("qemu-img")
    check = subprocess.run(["qemu-img", "check", tmp_path / "out.qcow2"], capture_output=True)
    assert check.returncode == 0, check.stdout
    assert os.path.getsize(tmp_path / "out.raw") == 4 << 20
