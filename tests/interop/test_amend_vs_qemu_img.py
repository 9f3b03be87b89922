"""arctern-img amend changes compat and lazy_refcounts exactly as qemu-img amend 7.2 does."""

from __future__ import annotations

import pytest


def twin_images(tools, options: str = "", writes=("write -P 1 0 64k", "write -z 128k 64k")):
    for name in ("ours.qcow2", "theirs.qcow2"):
        tools.ok(
            tools.qemu_img("create", "-q", "-f", "qcow2", "-o", options or "compat=1.1", name, "4M")
        )
        tools.ok(tools.qemu_io(*[a for w in writes for a in ("-c", w)], name))
    return "ours.qcow2", "theirs.qcow2"


@pytest.mark.parametrize(
    ("created", "steps"),
    [
        ("compat=1.1", ["lazy_refcounts=on", "lazy_refcounts=off"]),
        ("compat=1.1", ["compat=0.10", "compat=1.1", "compat=1.1,lazy_refcounts=on"]),
        ("lazy_refcounts=on", ["compat=0.10"]),  # a downgrade drops lazy refcounts
        ("compat=0.10", ["compat=0.10,lazy_refcounts=on", "compat=1.1"]),
        ("compat=1.1", ["cluster_size=4k", "foo=1"]),
    ],
)
def test_amend_matches(tools, created, steps):
    ours, theirs = twin_images(tools, created)
    for options in steps:
        mine, qemu = (
            tools.img("amend", "-o", options, ours),
            tools.qemu_img("amend", "-o", options, theirs),
        )
        assert (mine.rc, mine.out) == (qemu.rc, qemu.out), options
        # The same message (qemu-img's second line, a hint, joins ours after "; ").
        assert mine.err.startswith(qemu.err.split("\n")[0].replace("qemu-img:", "arctern-img:"))
        assert (tools.cwd / ours).read_bytes() == (tools.cwd / theirs).read_bytes(), options
    assert tools.qemu_img("check", ours).rc == 0


def test_amend_refuses_a_downgrade_it_cannot_express(tools):
    tools.ok(tools.qemu_img("create", "-q", "-f", "raw", "base.raw", "4M"))
    tools.ok(
        tools.qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2")
    )
    tools.ok(tools.qemu_io("-c", "write -z 0 64k", "top.qcow2"))  # zeroes over a backing file
    tools.ok(
        tools.qemu_img(
            "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", "z.qcow2", "4M"
        )
    )
    for image, why in (("top.qcow2", "zero clusters"), ("z.qcow2", "compression type")):
        before = (tools.cwd / image).read_bytes()
        result = tools.img("amend", "-o", "compat=0.10", image)
        assert result.rc == 1 and why in result.err and len(result.err.splitlines()) == 1
        assert (tools.cwd / image).read_bytes() == before
