"""arctern-img commit writes into the backing file what qemu-img commit 7.2 writes."""

from __future__ import annotations


def chain(tools, prefix: str) -> tuple[str, str]:
    """A 4 MiB base and a 6 MiB overlay holding data, COW'd partial clusters and zeroes."""
    base, top = f"{prefix}-base.qcow2", f"{prefix}-top.qcow2"
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", base, "4M"))
    tools.ok(tools.qemu_io("-c", "write -P 1 0 1M", "-c", "write -P 2 3M 64k", base))
    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top, "6M"))
    writes = ("write -P 9 512k 64k", "write -z 0 4k", "write -P 7 5M 64k", "write -z 3M 64k")
    tools.ok(tools.qemu_io(*[a for w in writes for a in ("-c", w)], top))
    return base, top


def test_commit_matches_qemu_img(tools):
    our_base, our_top = chain(tools, "ours")
    their_base, their_top = chain(tools, "theirs")
    tools.ok(tools.qemu_img("convert", "-O", "raw", our_top, "before.raw"))
    mine, qemu = tools.img("commit", our_top), tools.qemu_img("commit", their_top)
    assert (
        (mine.rc, mine.out, mine.err)
        == (qemu.rc, qemu.out, qemu.err)
        == (0, "Image committed.\n", "")
    )
    # The backing file holds the same bytes as after qemu-img commit, grown to 6 MiB.
    assert (tools.cwd / our_base).read_bytes() == (tools.cwd / their_base).read_bytes()
    # The top image is empty: it reads as before, now all from its backing file.
    tools.ok(tools.qemu_img("compare", our_top, "before.raw"))
    assert '"depth": 0' not in tools.ok(tools.qemu_img("map", "--output=json", our_top))
    for image in (our_base, our_top):
        assert tools.qemu_img("check", image).rc == 0


def test_commit_keeps_the_image_with_d_and_refuses_without_backing(tools):
    base, top = chain(tools, "ours")
    tools.ok(tools.img("commit", "-q", "-d", top))
    assert '"depth": 0' in tools.ok(tools.qemu_img("map", "--output=json", top))
    tools.ok(tools.qemu_img("compare", top, base))
    mine, qemu = tools.img("commit", base), tools.qemu_img("commit", base)
    assert mine.rc == qemu.rc == 1
    assert mine.err.replace("arctern-img:", "qemu-img:") == qemu.err


def test_commit_rate_limit_holds_the_copy_back(tools):
    """-r caps the average rate of what is copied: 3 MiB at 8 MiB/s take at least 0.375 s."""
    import time

    tools.ok(tools.qemu_img("create", "-q", "-f", "qcow2", "base.qcow2", "4M"))
    tools.ok(
        tools.qemu_img(
            "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"
        )
    )
    tools.ok(tools.qemu_io("-c", "write -P 5 0 3M", "top.qcow2"))
    start = time.monotonic()
    mine = tools.img("commit", "-r", "8M", "top.qcow2")
    elapsed = time.monotonic() - start
    assert (mine.rc, mine.out) == (0, "Image committed.\n")
    assert elapsed >= 0.375  # a lower bound: load only makes it slower
    tools.ok(tools.qemu_io("-c", "read -P 5 0 3M", "base.qcow2"))


def test_commit_refuses_a_rate_that_is_not_a_size(tools):
    _, top = chain(tools, "ours")
    for rate in ("fast", "-5"):
        mine, qemu = tools.img("commit", "-r", rate, top), tools.qemu_img("commit", "-r", rate, top)
        assert mine.rc == qemu.rc == 1
        # qemu-img prints its sentence over two lines; Arctern's errors are one line.
        assert mine.err.replace("arctern-img: ", "").strip() == " ".join(
            line.removeprefix("qemu-img: ") for line in qemu.err.splitlines()
        )
