"""Internal snapshots made, applied and deleted by the qcow2 driver, judged by QEMU.

After every step ``qemu-img check`` must find the image clean, and an applied
snapshot must read (through ``qemu-img convert``) as the image did when it was
taken. Snapshots cross between the two implementations in both directions.
"""

from __future__ import annotations

import errno
import json
import os
import random
import time

import pytest

from arctern.block import open_image
from arctern.block.driver import SnapshotError
from arctern.errors import ArcternError, InactiveError, ReadOnlyError

KiB, MiB = 1 << 10, 1 << 20

#: (compat, cluster size, refcount bits): v2 and v3, small and large clusters, wide refcounts.
SHAPES = [("1.1", 64 * KiB, 16), ("1.1", 512, 64), ("0.10", 4 * KiB, 16), ("1.1", 4 * KiB, 8)]


def create(path: str, name: str) -> dict:
    now = time.time_ns()
    with open_image(path, fmt="qcow2") as image:
        return image.node.driver.snapshot_create(
            name, date_sec=now // 10**9, date_nsec=now % 10**9 // 1000 * 1000, icount=0
        )


def goto(path: str, id_or_name: str) -> None:
    with open_image(path, fmt="qcow2") as image:
        image.node.driver.snapshot_goto(id_or_name)


def delete(path: str, snapshot_id: str, name: str) -> None:
    with open_image(path, fmt="qcow2") as image:
        image.node.driver.snapshot_delete(snapshot_id, name)


def qemu_snapshots(tools, path: str) -> list[dict]:
    info = json.loads(tools.qemu_img("info", "--output=json", path).stdout)
    return info.get("snapshots", [])


@pytest.mark.parametrize(
    "compat,cluster,bits", SHAPES, ids=[f"compat{c}-c{s}-r{b}" for c, s, b in SHAPES]
)
def test_create_apply_delete_with_writes_between(tools, random_io, compat, cluster, bits):
    path = tools.path("s.qcow2")
    tools.qemu_create(path, "3M", f"compat={compat},cluster_size={cluster},refcount_bits={bits}")
    tools.qemu_io(path, "write -P 7 0 200k", "write -c -P 8 1M 64k")  # compressed too
    expected = bytearray(tools.raw_by_qemu(path))
    seen = {}
    for step, name in enumerate(("one", "two", "three")):
        made = create(path, name)
        tools.assert_qemu_check_clean(path)
        seen[made["id"]] = bytes(expected)
        with open_image(path, fmt="qcow2", discard="unmap") as image:
            random_io(image, expected, step, 25, cluster)
        tools.assert_qemu_check_clean(path)
        assert tools.raw_by_qemu(path) == expected
    assert [s["name"] for s in qemu_snapshots(tools, path)] == ["one", "two", "three"]
    for step, ident in enumerate(("1", "3", "two")):
        goto(path, ident)
        tools.assert_qemu_check_clean(path)
        wanted = seen[{"two": "2"}.get(ident, ident)]
        assert tools.raw_by_qemu(path) == wanted
        with open_image(path, fmt="qcow2", discard="unmap") as image:
            expected = bytearray(wanted)
            random_io(image, expected, 10 + step, 10, cluster)
        assert tools.raw_by_qemu(path) == expected
    for ident, name in (("2", "two"), ("1", "one"), ("3", "three")):
        delete(path, ident, name)
        tools.assert_qemu_check_clean(path)
        assert tools.raw_by_qemu(path) == expected
    assert qemu_snapshots(tools, path) == []
    assert tools.read_all(path) == expected


def test_snapshots_cross_between_qemu_and_arctern(tools):
    path = tools.path("x.qcow2")
    tools.qemu_create(path, "2M", "cluster_size=4k")
    tools.qemu_io(path, "write -P 1 0 1M", "write -z 1M 64k")
    tools.qemu_img("snapshot", "-c", "by-qemu", path)
    at_qemu = tools.raw_by_qemu(path)
    tools.qemu_io(path, "write -P 2 4k 300k")
    create(path, "by-arctern")
    at_arctern = tools.raw_by_qemu(path)
    tools.qemu_io(path, "write -P 3 0 2M")
    goto(path, "by-qemu")  # made by qemu-img, applied by Arctern
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == at_qemu
    tools.qemu_img("snapshot", "-a", "by-arctern", path)  # and the other way round
    tools.assert_qemu_check_clean(path)
    assert tools.read_all(path) == at_arctern
    delete(path, "1", "by-qemu")
    tools.assert_qemu_check_clean(path)
    tools.qemu_img("snapshot", "-d", "by-arctern", path)
    tools.assert_qemu_check_clean(path)
    assert tools.read_all(path) == at_arctern
    assert qemu_snapshots(tools, path) == []


def test_snapshot_entry_and_ids_as_qemu_makes_them(tools):
    """Our entries read back as qemu-img reads them; IDs are one past the largest."""
    path = tools.path("ids.qcow2")
    tools.qemu_create(path, "1M")
    names = ["a", "b", "a", "c"]  # names need not be unique
    made = [create(path, name) for name in names]
    assert [m["id"] for m in made] == ["1", "2", "3", "4"]
    assert qemu_snapshots(tools, path) == made
    delete(path, "4", "c")
    delete(path, "2", "b")
    assert create(path, "d")["id"] == "4"
    goto(path, "a")  # not an ID: the first snapshot of that name
    goto(path, "1")
    with pytest.raises(SnapshotError) as missing:
        goto(path, "zzz")
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(SnapshotError):
        delete(path, "1", "b")  # ID and name must both match
    assert [s["id"] for s in qemu_snapshots(tools, path)] == ["1", "3", "4"]
    tools.assert_qemu_check_clean(path)


def test_apply_restores_the_snapshot_size(tools):
    path = tools.path("size.qcow2")
    tools.qemu_create(path, "1M", "cluster_size=512")
    tools.qemu_io(path, "write -P 4 0 1M")
    create(path, "small")
    small = tools.raw_by_qemu(path)
    tools.qemu_img("resize", "-q", path, "3M")
    tools.qemu_io(path, "write -P 5 2M 1M")
    create(path, "big")
    big = tools.raw_by_qemu(path)
    goto(path, "small")
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == small
    goto(path, "big")
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == big


def test_refcount_overflow_refuses_and_changes_nothing(tools):
    """1-bit refcounts cannot share a cluster: refused (EINVAL as QEMU), nothing leaked."""
    path = tools.path("r1.qcow2")
    tools.qemu_create(path, "1M", "refcount_bits=1")
    create(path, "empty")  # nothing to share yet
    tools.qemu_io(path, "write -P 6 0 64k")
    before = open(path, "rb").read()
    with pytest.raises(SnapshotError) as refused:
        create(path, "full")
    assert refused.value.errno == errno.EINVAL
    assert open(path, "rb").read() == before
    tools.assert_qemu_check_clean(path)
    goto(path, "empty")
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == bytes(MiB)


def test_inactive_or_read_only_nodes_write_nothing(tools):
    path = tools.path("ro.qcow2")
    tools.qemu_create(path, "1M")
    tools.qemu_img("snapshot", "-c", "s", path)
    before = open(path, "rb").read()
    for kwargs, error in (({"active": False}, InactiveError), ({"read_only": True}, ReadOnlyError)):
        with open_image(path, fmt="qcow2", **kwargs) as image:
            driver = image.node.driver
            with pytest.raises(error):
                driver.snapshot_create("t", date_sec=0, date_nsec=0)
            with pytest.raises(error):
                driver.snapshot_goto("s")
            with pytest.raises(error):
                driver.snapshot_delete("1", "s")
    assert open(path, "rb").read() == before


def test_unknown_extra_data_is_kept(tools):
    """Bytes of a snapshot entry's extra data we do not know survive a table rewrite."""
    from arctern_block_qcow2.snapshots import read_snapshots

    path = tools.path("extra.qcow2")
    tools.qemu_create(path, "1M")
    tools.qemu_img("snapshot", "-c", "old", path)
    with open_image(path, fmt="qcow2") as image:
        driver = image.node.driver
        driver.snapshots[0].unknown_extra = b"future!!"
        driver.snapshot_create("new", date_sec=1, date_nsec=0)  # rewrites the table
    tools.assert_qemu_check_clean(path)
    with open_image(path, fmt="qcow2", read_only=True) as image:
        h, file = image.node.driver.h, image.node.file
        snaps, _ = read_snapshots(
            file, h.snapshots_offset, 2, h.cluster_size, path, file.getlength()
        )
    assert [s.unknown_extra for s in snaps] == [b"future!!", b""]
    assert [s["name"] for s in qemu_snapshots(tools, path)] == ["old", "new"]


@pytest.mark.parametrize("seed", range(3))
def test_damaged_metadata_fails_in_one_line(tools, tmp_path, seed):
    """Snapshot operations on randomly damaged images: an ArcternError line or success."""
    path = tools.path("base.qcow2")
    tools.qemu_create(path, "2M", "cluster_size=4096")
    tools.qemu_io(path, "write -P 1 0 300k", "write -c 1M 64k")
    tools.qemu_img("snapshot", "-c", "s1", path)
    tools.qemu_io(path, "write -P 2 100k 100k")
    base = open(path, "rb").read()
    rng = random.Random(seed)
    for attempt in range(40):
        damaged = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(min(0x20000, len(damaged))) // 8 * 8
            damaged[pos : pos + 8] = rng.randbytes(8)
        victim = tmp_path / f"damaged{attempt}.qcow2"
        for operation, args in ((create, ("new",)), (goto, ("s1",)), (delete, ("1", "s1"))):
            victim.write_bytes(damaged)
            try:
                operation(str(victim), *args)
            except ArcternError as exc:
                assert "\n" not in str(exc)


def test_freed_clusters_are_reused(tools):
    """Each operation's new tables go into free clusters: create/apply/delete cycles that
    leave no snapshot behind do not make the file grow."""
    path = tools.path("cycle.qcow2")
    tools.qemu_create(path, "4M", "cluster_size=4k")
    tools.qemu_io(path, "write -P 1 0 2M")
    sizes = []
    with open_image(path, fmt="qcow2") as image:
        driver = image.node.driver
        for _ in range(6):
            made = driver.snapshot_create("s", date_sec=0, date_nsec=0)
            image.pwrite(8192, b"x" * 5000)  # (goes back to the snapshot's data next)
            driver.snapshot_goto("s")
            driver.snapshot_delete(made["id"], "s")
            sizes.append(os.path.getsize(path))
    assert sizes[1:] == sizes[:-1], sizes
    tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == b"\x01" * (2 * MiB) + bytes(2 * MiB)


@pytest.mark.parametrize(
    "compat,cluster,bits", [("1.1", 512, 64), ("1.1", 1024, 2), ("0.10", 4 * KiB, 16)]
)
def test_random_snapshot_operations_against_a_model(tools, random_io, compat, cluster, bits):
    """Random writes, creates, applies and deletes; the image is clean after every step and
    every snapshot reads back as the model remembers it (2-bit refcounts: a create that
    would overflow is refused and changes nothing)."""
    path = tools.path("model.qcow2")
    tools.qemu_create(path, "2M", f"compat={compat},cluster_size={cluster},refcount_bits={bits}")
    rng = random.Random(cluster + bits)
    expected = bytearray(2 * MiB)
    kept: dict[str, tuple[str, bytes]] = {}
    for step in range(30):
        operation = rng.choice("wwccad")
        with open_image(path, fmt="qcow2", discard="unmap") as image:
            driver = image.node.driver
            if operation == "w":
                random_io(image, expected, step, 3, cluster)
            elif operation == "c":
                try:
                    made = driver.snapshot_create(f"s{step}", date_sec=step, date_nsec=0)
                    kept[made["id"]] = (f"s{step}", bytes(expected))
                except SnapshotError as exc:
                    assert bits < 16 and exc.errno == errno.EINVAL
            elif kept:
                ident = rng.choice(sorted(kept))
                if operation == "a":
                    driver.snapshot_goto(ident)
                    expected = bytearray(kept[ident][1])
                else:
                    driver.snapshot_delete(ident, kept.pop(ident)[0])
        tools.assert_qemu_check_clean(path)
    assert tools.raw_by_qemu(path) == expected
    assert [s["id"] for s in qemu_snapshots(tools, path)] == sorted(kept, key=int)
    for ident, (_, content) in kept.items():
        goto(path, ident)
        assert tools.raw_by_qemu(path) == content
