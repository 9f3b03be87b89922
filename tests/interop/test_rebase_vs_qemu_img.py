"""arctern-img rebase does what qemu-img rebase 7.2 does: the same bytes in the same file."""

from __future__ import annotations

import pytest


@pytest.fixture
def chain(tools):
    """Two backing files and a way to make identical overlays on the first one."""
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "old.qcow2", "4M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 1M", "old.qcow2"))
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "new.qcow2", "4M"))
    writes = ("write -P 1 0 512k", "write -P 2 2M 64k", "write -P 3 3584k 1k")
    tools.ok(tools.qemu_io(*[a for w in writes for a in ("-c", w)], "new.qcow2"))

    def overlay(name: str) -> str:
        tools.ok(
            tools.qemu_img("create", "-q", "-f", "qcow2", "-b", "old.qcow2", "-F", "qcow2", name)
        )
        tools.ok(tools.qemu_io("-c", "write -P 9 3M 4k", name))
        return name

    return overlay


def guest_view(tools, image: str) -> bytes:
    tools.ok(tools.qemu_img("convert", "-O", "raw", image, image + ".raw"))
    return (tools.cwd / (image + ".raw")).read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["-b", "new.qcow2", "-F", "qcow2"],  # safe: keeps what the guest reads
        ["-b", ""],  # safe: copies in everything the old backing file shows
        ["-u", "-b", "moved.qcow2", "-F", "qcow2"],  # unsafe: the name only
        ["-u", "-b", ""],
    ],
)
def test_rebase_writes_what_qemu_img_writes(tools, chain, args):
    ours, theirs = chain("ours.qcow2"), chain("theirs.qcow2")
    before = guest_view(tools, theirs)
    mine, qemu = tools.img("rebase", *args, ours), tools.qemu_img("rebase", *args, theirs)
    assert (mine.rc, mine.out, mine.err) == (qemu.rc, qemu.out, qemu.err) == (0, "", "")
    assert (tools.cwd / ours).read_bytes() == (tools.cwd / theirs).read_bytes()
    if "-u" not in args:  # (unsafe: moved.qcow2 does not exist)
        assert tools.qemu_img("check", ours).rc == 0
        assert guest_view(tools, ours) == before


@pytest.mark.parametrize("args", [["-b", "new.qcow2"], ["-b", "missing.qcow2", "-F", "qcow2"]])
def test_rebase_refusals_match(tools, chain, args):
    ours, theirs = chain("ours.qcow2"), chain("theirs.qcow2")
    mine, qemu = tools.img("rebase", *args, ours), tools.qemu_img("rebase", *args, theirs)
    assert mine.rc == qemu.rc == 1
    assert mine.err.replace("arctern-img:", "qemu-img:") == qemu.err
    assert "backing file: old.qcow2" in tools.ok(tools.img("info", ours))
