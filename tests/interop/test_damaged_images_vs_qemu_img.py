"""Damaged qcow2 images: arctern-img check, check -r and probing do what qemu-img 7.2 does.

Every image starts as ``qemu-img create`` (64 KiB clusters: refcount table at 0x10000,
refcount block at 0x20000, L1 table at 0x30000) with one data cluster written by qemu-io
(L2 table at 0x40000, data at 0x50000), then gets one field overwritten.
"""

from __future__ import annotations

import shutil
import struct

import pytest

L1, L2, REFBLOCK = 0x30000, 0x40000, 0x20000
COPIED = 1 << 63


def damaged_image(tools, name: str, *patches: tuple[int, bytes]) -> str:
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", name, "4M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 64k", name))
    with open(tools.cwd / name, "r+b") as f:
        for offset, data in patches:
            f.seek(offset)
            f.write(data)
    return name


def twin(tools, name: str) -> str:
    """A byte-identical copy, so that each tool repairs its own image."""
    copy = "qemu-" + name
    shutil.copyfile(tools.cwd / name, tools.cwd / copy)
    return copy


def stderr_lines(text: str) -> set[str]:
    return {line.replace("arctern-img:", "qemu-img:") for line in text.splitlines()}


DAMAGE = {
    "l2-table-unaligned": [(L1, struct.pack(">Q", COPIED | (L2 + 0x200)))],
    "data-cluster-unaligned": [(L2, struct.pack(">Q", COPIED | 0x50200))],
    "l2-table-past-the-end": [(L1, struct.pack(">Q", COPIED | (32 << 40)))],
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_check_reports_what_qemu_img_reports(tools, damage):
    image = damaged_image(tools, "d.qcow2", *DAMAGE[damage])
    for args in (["check"], ["check", "--output=json"]):
        ours, theirs = tools.img(*args, image), tools.qemu_img(*args, image)
        assert (ours.rc, ours.out) == (theirs.rc, theirs.out) == (2, theirs.out)
        assert stderr_lines(ours.err) == stderr_lines(theirs.err)


@pytest.mark.parametrize("damage", ["l2-table-unaligned", "l2-table-past-the-end"])
def test_check_repair_all_matches_qemu_img(tools, damage):
    ours = damaged_image(tools, "d.qcow2", *DAMAGE[damage])
    theirs = twin(tools, ours)
    mine, qemu = tools.img("check", "-r", "all", ours), tools.qemu_img("check", "-r", "all", theirs)
    assert (mine.rc, mine.out) == (qemu.rc, qemu.out)
    assert stderr_lines(mine.err) == stderr_lines(qemu.err)
    assert (tools.cwd / ours).read_bytes() == (tools.cwd / theirs).read_bytes()


def test_check_repairs_an_image_marked_corrupt(tools):
    # The corrupt bit is set and the data cluster's refcount is 0.
    image = damaged_image(
        tools, "c.qcow2", (72, struct.pack(">Q", 2)), (REFBLOCK + 2 * 5, struct.pack(">H", 0))
    )
    assert tools.img("check", image).rc == 2
    result = tools.img("check", "-r", "all", image)
    assert result.rc == 0, result
    assert "    0 leaked clusters\n    1 corruptions\n" in result.out  # qemu-img's counts
    assert tools.qemu_img("check", image).rc == 0
    assert '"corrupt": false' in tools.ok(tools.qemu_img("info", "--output=json", image))
    tools.ok(tools.io("-c", "write -P 7 64k 64k", image))  # writable again
    assert tools.qemu_img("check", image).rc == 0


@pytest.mark.parametrize("version", [1, 4, 5])
def test_unsupported_version_is_qcow2_and_refused_not_raw(tools, version):
    image = damaged_image(tools, "v.qcow2", (4, struct.pack(">I", version)))
    before = (tools.cwd / image).read_bytes()
    theirs = tools.qemu_img("info", image)
    for result in (tools.img("info", image), tools.io("-c", "write 0 512", image)):
        assert result.rc == 1 == theirs.rc
        assert f"unsupported qcow2 version {version}" in result.err.lower()
        assert len(result.err.strip().splitlines()) == 1
    if version > 1:  # version 1 is QEMU's older qcow format, refused by another driver
        assert f"Unsupported qcow2 version {version}" in theirs.err
    assert (tools.cwd / image).read_bytes() == before
