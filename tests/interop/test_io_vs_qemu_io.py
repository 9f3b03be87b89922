"""arctern-io prints what qemu-io 7.2 prints, and the two refuse each other's images."""

from __future__ import annotations

import shutil
import subprocess

import pytest

SCRIPT = [
    "write -P 0xab 0 64k",
    "write -P 0x11 70000 5000",
    "write -z 128k 64k",
    "read -P 0xab 0 64k",
    "read -P 0x11 -s 4464 -l 100 65536 10000",
    "read -P 0xcd 0 4k",
    "read -v 65530 40",
    "read -q 0 1M",
    "read -C 0 512",
    "discard 1M 128k",
    "map",
    "flush",
    "aio_flush",
    "bogus",
    "read 0",
    "read 1x 1",
    "read -P 256 0 1",
    "write -z -P 1 0 1",
    "write -u 0 512",
    "write 0 4G",
    "help flush",
    "length",
    "writev -P 3 200k 4k 8k 100",
    "readv -P 3 200k 12388",
    "readv -P 4 200k 4k",
    "truncate 6M",
    "length",
]


def as_args(commands):
    return [arg for c in commands for arg in ("-c", c)]


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_same_commands_same_output(tools, normalize, fmt):
    tools.ok(tools.qemu_img("create", "-q", "-f", fmt, "a.img", "4M"))
    tools.ok(tools.qemu_io("-f", fmt, "-c", "write -P 0x22 1M 256k", "a.img"))
    shutil.copy(tools.cwd / "a.img", tools.cwd / "q.img")
    ours = tools.io("-f", fmt, *as_args(SCRIPT), "a.img")
    theirs = tools.qemu_io("-f", fmt, *as_args(SCRIPT), "q.img")
    assert ours.rc == theirs.rc == 1
    assert normalize(ours.out) == normalize(theirs.out)
    assert normalize(ours.err) == normalize(theirs.err)
    assert tools.qemu_img("compare", "-f", fmt, "-F", fmt, "a.img", "q.img").rc == 0


def test_same_output_on_a_backing_chain_map(tools, normalize):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 1M", "base.qcow2"))
    for name in ("a.qcow2", "q.qcow2"):
        tools.ok(
            tools.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", name)
        )
    commands = as_args(
        [
            "write -P 2 512k 1000",
            "write -z 2M 64k",
            "map",
            "read -P 1 0 512k",
            "read -P 2 512k 1000",
            "read -P 1 525288 4096",
        ]
    )
    ours, theirs = tools.io(*commands, "a.qcow2"), tools.qemu_io(*commands, "q.qcow2")
    assert (ours.rc, normalize(ours.out)) == (theirs.rc, normalize(theirs.out))
    assert tools.qemu_img("check", "a.qcow2").rc == 0


def test_interactive_commands_from_stdin(tools, normalize):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "1M"))
    shutil.copy(tools.cwd / "a.qcow2", tools.cwd / "q.qcow2")
    stdin = "write -P 5 0 4k\nread -P 5 0 4k\n\nread -P 6 0 4k\nquit\nread 0 1\n"
    ours = tools.io("a.qcow2", stdin=stdin)
    theirs = tools.qemu_io("q.qcow2", stdin=stdin)
    assert ours.rc == theirs.rc
    assert normalize(ours.out).replace("arctern-io> ", "qemu-io> ") == normalize(theirs.out)


def _holder(argv, cwd):
    """Start an interactive tool holding ``argv``'s image open; return once it has opened it."""
    proc = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    prompt = proc.stdout.read(len("qemu-io> ") if argv[0] == "qemu-io" else len("arctern-io> "))
    assert prompt.endswith(b"> "), prompt
    return proc


def _release(proc):
    proc.communicate(b"quit\n", timeout=30)


def test_qemu_io_holding_the_image_makes_arctern_io_refuse(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "1M"))
    holder = _holder(["qemu-io", "a.qcow2"], tools.cwd)
    try:
        refused = tools.io("-c", "write 0 512", "a.qcow2")
        assert refused.rc == 1
        assert refused.err.startswith("arctern-io: can't open device a.qcow2: ")
        assert 'Failed to get "write" lock' in refused.err
        assert "Is another process using the image [a.qcow2]?" in refused.err
        shared = tools.io("-r", "-U", "-c", "read 0 512", "a.qcow2")
        assert shared.rc == 0, shared.err
    finally:
        _release(holder)
    assert tools.io("-c", "write 0 512", "a.qcow2").rc == 0


def test_arctern_io_holding_the_image_makes_qemu_io_refuse(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "a.qcow2", "1M"))
    holder = _holder([tools.program("arctern-io"), "a.qcow2"], tools.cwd)
    try:
        refused = tools.qemu_io("-c", "write 0 512", "a.qcow2")
        assert refused.rc == 1
        assert 'Failed to get "write" lock' in refused.err
        assert "Is another process using the image [a.qcow2]?" in refused.err
        assert tools.qemu_io("-r", "-U", "-c", "read 0 512", "a.qcow2").rc == 0
        assert tools.img("info", "-U", "a.qcow2").rc == 0
        ours, theirs = tools.img("info", "a.qcow2"), tools.qemu_img("info", "a.qcow2")
        assert ours.rc == theirs.rc == 1
        assert 'Failed to get shared "write" lock' in theirs.err
        assert 'Failed to get shared "write" lock' in ours.err
    finally:
        _release(holder)
    assert tools.qemu_io("-c", "write 0 512", "a.qcow2").rc == 0
