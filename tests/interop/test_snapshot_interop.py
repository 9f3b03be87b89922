"""``arctern-img snapshot`` against the real ``qemu-img snapshot`` (7.2).

The same commands run on two copies of an image, one per tool: output, error
messages and exit codes must be the same (Arctern prints each error on one
line: the line breaks of qemu-img's are joined); the images must stay clean
for ``qemu-img check`` and hold the same snapshots and the same data.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def as_qemu_says(err: str) -> str:
    """Our stderr in qemu-img's layout: its tool name, its line breaks."""
    err = err.replace("arctern-img", "qemu-img")
    err = err.replace("; Try 'qemu-img --help'", "\nTry 'qemu-img --help'")
    return err.replace(". Is another process", "\nIs another process")


def undated(text: str) -> str:
    """A snapshot listing with its dates blanked (for snapshots taken by two tools)."""
    return DATE.sub("<date>", text)


def assert_same(ours, theirs, *, dated: bool = True) -> None:
    if not dated:
        ours.out, theirs.out = undated(ours.out), undated(theirs.out)
    assert (ours.rc, ours.out) == (theirs.rc, theirs.out), (ours, theirs)
    assert as_qemu_says(ours.err) == theirs.err


def snapshots(tools, path: str) -> list[tuple]:
    info = json.loads(tools.ok(tools.qemu_img("info", "--output=json", path)))
    return [(s["id"], s["name"], s["vm-state-size"]) for s in info.get("snapshots", [])]


@pytest.fixture
def pair(tools):
    """``pair(*args)``: run ``snapshot *args`` with each tool on its own copy of q.qcow2."""
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "q.qcow2", "2M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 1M", "q.qcow2"))
    shutil.copyfile(tools.cwd / "q.qcow2", tools.cwd / "a.qcow2")

    def run(*args: str) -> None:
        ours = tools.img("snapshot", *args, "a.qcow2")
        assert_same(ours, tools.qemu_img("snapshot", *args, "q.qcow2"), dated=False)
        for image in ("a.qcow2", "q.qcow2"):
            assert tools.qemu_img("check", image).rc == 0
        assert snapshots(tools, "a.qcow2") == snapshots(tools, "q.qcow2")

    return run


def test_snapshot_commands_behave_as_qemu_img(tools, pair):
    steps = [
        ("-c", "first"),
        ("-c", "second"),
        ("-c", "first"),  # a second snapshot of that name: allowed
        ("-c", "3"),  # named like an ID
        ("-l",),
        ("-a", "first"),
        ("-a", "3"),  # by ID first
        ("-a", "nope"),
        ("-d", "3"),  # by name only: the snapshot named "3" (ID 4)
        ("-d", "first"),
        ("-d", "2"),
        ("-q", "-c", "quiet"),
        (),  # no action: opened read-write, nothing done
        ("-l",),
    ]
    for args in steps:
        pair(*args)
        for image in ("a.qcow2", "q.qcow2"):
            tools.ok(tools.qemu_io("-c", f"write -P {len(args) + 2} 64k 200k", image))
        tools.ok(tools.qemu_img("compare", "a.qcow2", "q.qcow2"))


def test_snapshots_made_by_arctern_are_listed_alike(tools):
    """Listed, described and checked alike by both tools."""
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "1M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 300k", "-c", "write -c 512k 64k", "v2.qcow2"))
    for name in ("alpha", "a much longer snapshot name than the column", "gamma"):
        tools.ok(tools.img("snapshot", "-c", name, "v2.qcow2"))
        tools.ok(tools.qemu_io("-c", "write -P 2 64k 100k", "v2.qcow2"))
    tools.ok(tools.img("snapshot", "-a", "alpha", "v2.qcow2"))
    tools.ok(tools.img("snapshot", "-d", "gamma", "v2.qcow2"))
    listings = (["snapshot", "-l"], ["info"], ["info", "--output=json"])
    for args in (*listings, ["check"], ["check", "--output=json"]):
        ours, theirs = tools.img(*args, "v2.qcow2"), tools.qemu_img(*args, "v2.qcow2")
        assert ours.rc == theirs.rc == 0
        assert ours.out == theirs.out
    assert "a much longer snapshot name" in tools.ok(tools.qemu_img("snapshot", "-l", "v2.qcow2"))


@pytest.mark.parametrize(
    "args",
    [
        ["-l", "-c", "x"],
        ["-c", "x", "-d", "y"],
        ["-l"],
        ["-l", "q.qcow2", "other.qcow2"],
        ["-c"],
        ["-x", "q.qcow2"],
        ["-f", "qcow2", "-l", "q.qcow2"],  # qemu-img snapshot takes no -f
        ["-U", "-c", "x", "q.qcow2"],
        ["-U", "-d", "x", "q.qcow2"],
        ["-U", "q.qcow2"],
        ["--object", "foo", "-l", "q.qcow2"],
        ["--object", "secret,data=x", "-l", "q.qcow2"],
        ["-a", "missing", "q.qcow2"],
        ["-d", "missing", "q.qcow2"],
        ["--image-opts", "-l", "driver=qcow2"],
        ["--image-opts", "-l", "driver=qcow2,file.filename=q.qcow2"],
    ],
)
def test_errors_match_qemu_img(tools, args):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "q.qcow2", "1M"))
    ours, theirs = tools.img("snapshot", *args), tools.qemu_img("snapshot", *args)
    assert_same(ours, theirs)


@pytest.mark.parametrize("args", [["-l"], ["-c", "x"], ["-a", "x"], ["-d", "x"]])
def test_raw_image_is_refused_as_by_qemu_img(tools, args):
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "r.raw", "1M"))
    ours, theirs = tools.img("snapshot", *args, "r.raw"), tools.qemu_img("snapshot", *args, "r.raw")
    if args[0] == "-a":
        # qemu-img's fallback closes and reopens the raw driver, which warns again about
        # the probed format; Arctern warns once.
        warning = theirs.err[: theirs.err.index("qemu-img:")] if "qemu-img:" in theirs.err else ""
        assert warning.count("WARNING:") == 2
        theirs.err = theirs.err.replace(warning, warning[: len(warning) // 2], 1)
    assert_same(ours, theirs)


def test_refcount_overflow_is_refused_as_by_qemu_img(tools):
    for name in ("a.qcow2", "q.qcow2"):
        tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", name, "1M"))
        tools.ok(tools.qemu_io("-c", "write 0 64k", name))
    ours = tools.img("snapshot", "-c", "s", "a.qcow2")
    theirs = tools.qemu_img("snapshot", "-c", "s", "q.qcow2")
    assert_same(ours, theirs)
    assert tools.qemu_img("check", "a.qcow2").rc == 0  # (qemu-img leaks the L1 copy)


def test_locked_image_is_refused_as_by_qemu_img(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "q.qcow2", "1M"))
    tools.ok(tools.qemu_img("snapshot", "-c", "s", "q.qcow2"))
    holder = subprocess.Popen(
        ["qemu-io", "q.qcow2"], cwd=tools.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        holder.stdin.write(b"read 0 512\n")
        holder.stdin.flush()
        holder.stdout.readline()  # the image is open (and locked) once qemu-io answers
        for args in (["-c", "x"], ["-a", "s"], ["-d", "s"], ["-l"], []):
            assert_same(
                tools.img("snapshot", *args, "q.qcow2"),
                tools.qemu_img("snapshot", *args, "q.qcow2"),
            )
        listed = tools.img("snapshot", "-U", "-l", "q.qcow2")
        assert listed.out == tools.qemu_img("snapshot", "-U", "-l", "q.qcow2").out != ""
    finally:
        holder.communicate(b"quit\n", timeout=30)
