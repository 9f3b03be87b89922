"""block_resize and internal snapshots on a running machine, to qemu-system-i386 and arctern-system.

Both get the same drives (qcow2, raw, read-only raw, each behind virtio-blk)
and the same QMP and HMP requests through the qemu.qmp client; the replies
must be QEMU's (snapshot dates aside) and the images left behind must read
the same to qemu-img.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from guests.build import emulator_command
from qemu.qmp import ExecuteError
from qmp_requests import replies_to
from test_system_monitor import connect

from arctern.plugins import Registry

KERNEL = Registry().discover(["target"]).machine_type("microvm").builtin_guest("migration-demo")
DRIVES = [("d0", "qcow2", ""), ("d1", "raw", ""), ("d2", "raw", ",readonly=on")]


def _start(command: list[str], sock: Path) -> subprocess.Popen:
    """Start an emulator; return once its QMP socket exists (fail at once if it exits)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{command[0]} did not start: {process.communicate()[1]!r}")
        time.sleep(0.02)
    return process


def _hmp(line: str) -> tuple[str, dict]:
    return ("human-monitor-command", {"command-line": line})


REQUESTS = [
    _hmp("info snapshots"),
    ("block_resize", {"device": "d0", "size": 2 << 20}),
    ("block_resize", {"device": "d0", "size": (2 << 20) + 1}),
    ("block_resize", {"device": "d1", "size": 1000}),
    ("block_resize", {"device": "d2", "size": 2 << 20}),
    ("block_resize", {"device": "nosuch", "size": 2 << 20}),
    ("block_resize", {"node-name": "nosuch", "size": 2 << 20}),
    ("block_resize", {"size": 2 << 20}),
    ("block_resize", {"device": "d0", "size": -1}),
    ("block_resize", {"device": "d0", "size": "1"}),
    ("block_resize", {"device": "d0", "size": (1 << 63) - 1}),
    ("block_resize", {"device": "d0", "size": 1 << 65}),  # past int64: not an integer
    ("block_resize", {"device": "d0"}),
    ("blockdev-snapshot-internal-sync", {"device": "d0", "name": "s1"}),
    ("blockdev-snapshot-internal-sync", {"device": "d0", "name": "s1"}),
    ("blockdev-snapshot-internal-sync", {"device": "d1", "name": "s1"}),
    ("blockdev-snapshot-internal-sync", {"device": "d2", "name": "s1"}),
    ("blockdev-snapshot-internal-sync", {"device": "nosuch", "name": "s1"}),
    ("blockdev-snapshot-internal-sync", {"device": "d0", "name": ""}),
    ("blockdev-snapshot-internal-sync", {"device": "d0", "name": "s1", "x": 1}),
    ("block_resize", {"device": "d0", "size": 1 << 20}),  # a qcow2 v3 shrinks with snapshots
    _hmp("snapshot_blkdev_internal d0 s2"),
    _hmp("snapshot_blkdev_internal d0 s2"),
    _hmp("snapshot_blkdev_internal d1 s2"),
    _hmp("snapshot_blkdev_internal d0"),
    _hmp("info snapshots"),
    ("blockdev-snapshot-delete-internal-sync", {"device": "d0", "name": "s1"}),
    ("blockdev-snapshot-delete-internal-sync", {"device": "d0", "name": "s1"}),
    ("blockdev-snapshot-delete-internal-sync", {"device": "d0"}),
    ("blockdev-snapshot-delete-internal-sync", {"device": "d0", "id": "1"}),
    ("blockdev-snapshot-delete-internal-sync", {"device": "d1", "name": "x"}),
    _hmp("snapshot_delete_blkdev_internal d0 x 2"),
    _hmp("snapshot_delete_blkdev_internal d1 s2"),
    _hmp("snapshot_blkdev_internal d0 s3"),
    _hmp("snapshot_delete_blkdev_internal d0 s2 2"),
    _hmp("block_resize"),
    _hmp("block_resize nosuch 1M"),
    _hmp("block_resize d0"),
    _hmp("block_resize d0 abc"),
    _hmp("block_resize d0 -1"),
    _hmp("block_resize d0 4M extra"),
    _hmp("block_resize d2 3M"),
    _hmp("block_resize d0 1.5M"),
    _hmp("block_resize d0 64"),  # HMP's unit is MiB
    _hmp("block_resize d0 8796093022207"),  # INT64_MAX rounded down to MiB: too large
    _hmp("block_resize d0 10000000000000"),  # past INT64_MAX: not a size
    _hmp("block_resize d1 512b"),
    _hmp("info snapshots"),
]

_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _session(emulator: str, tmp: Path) -> tuple[list, dict]:
    folder = tmp / emulator
    folder.mkdir()
    command = [*emulator_command(emulator), "-nodefaults", "-display", "none", "-S"]
    command += ["-kernel", str(KERNEL), "-qmp", f"unix:{folder}/qmp,server=on,wait=off"]
    for drive, fmt, extra in DRIVES:
        path = folder / f"{drive}.{fmt}"
        subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), "1M"], check=True)
        command += ["-drive", f"file={path},if=none,id={drive},format={fmt}{extra}"]
        command += ["-device", f"virtio-blk-device,drive={drive}"]
    process = _start(command, folder / "qmp")
    try:
        replies = asyncio.run(replies_to(folder / "qmp", REQUESTS))
    finally:
        process.kill()
        process.wait()
    images = {}
    for drive, fmt, _extra in DRIVES:
        path = folder / f"{drive}.{fmt}"
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        images[drive] = json.loads(info.stdout)
        if fmt == "qcow2":
            subprocess.run(["qemu-img", "check", "-q", str(path)], check=True)
    return replies, images


def _undated(reply: dict) -> dict:
    """The reply without what depends on the clock: snapshot dates."""
    value = reply.get("return")
    if isinstance(value, str):
        return {"return": _DATE.sub("DATE", value)}
    if isinstance(value, dict) and "date-sec" in value:
        return {"return": {k: v for k, v in value.items() if not k.startswith("date-")}}
    return reply


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("block")
    return {emulator: _session(emulator, tmp) for emulator in ("qemu", "arctern")}


@pytest.mark.parametrize(
    "index", range(len(REQUESTS)), ids=[f"{n} {json.dumps(a)}" for n, a in REQUESTS]
)
def test_same_reply_as_qemu(sessions, index):
    qemu, arctern = sessions["qemu"][0][index], sessions["arctern"][0][index]
    assert _undated(arctern) == _undated(qemu)


def test_deleted_snapshot_reply_carries_its_date(sessions):
    index = REQUESTS.index(
        ("blockdev-snapshot-delete-internal-sync", {"device": "d0", "name": "s1"})
    )
    deleted = sessions["arctern"][0][index]["return"]
    assert set(deleted) == set(sessions["qemu"][0][index]["return"])
    assert deleted["date-sec"] > 1_600_000_000 and deleted["date-nsec"] % 1000 == 0


@pytest.mark.parametrize("drive", [d for d, _f, _e in DRIVES])
def test_images_left_behind_read_the_same(sessions, drive):
    qemu, arctern = sessions["qemu"][1][drive], sessions["arctern"][1][drive]
    assert arctern["virtual-size"] == qemu["virtual-size"]
    names = [[s["name"] for s in info.get("snapshots", [])] for info in (qemu, arctern)]
    assert names[1] == names[0]


def _named_nodes_session(emulator: str, tmp: Path) -> list:
    folder = tmp / emulator
    folder.mkdir()
    base, top = folder / "base.qcow2", folder / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "2M"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(top)],
        check=True,
    )
    raw = folder / "odd.raw"
    raw.write_bytes(bytes(1000))  # not a whole number of sectors
    command = [*emulator_command(emulator), "-nodefaults", "-display", "none", "-S"]
    command += ["-kernel", str(KERNEL), "-qmp", f"unix:{folder}/qmp,server=on,wait=off"]
    command += ["-drive", f"file={top},if=none,id=top,format=qcow2"]
    command += ["-drive", f"file={raw},if=none,id=odd,format=raw,cache=unsafe"]
    process = _start(command, folder / "qmp")

    async def ask() -> list:
        client = await connect(folder / "qmp")
        try:
            tree = await client.execute("query-named-block-nodes")
            flat = await client.execute("query-named-block-nodes", {"flat": True})
            root = next(n["node-name"] for n in tree if n["file"] == str(top))
            await client.execute("block_resize", {"node-name": root, "size": 4 << 20})
            after = await client.execute("query-named-block-nodes", {"flat": True})
            try:
                await client.execute("query-named-block-nodes", {"flat": 1})
            except ExecuteError as exc:
                error = str(exc)
            block = await client.execute("query-block")
            return [tree, flat, after, error, block]
        finally:
            with contextlib.suppress(EOFError, ConnectionError):
                await client.disconnect()

    try:
        replies = asyncio.run(ask())
    finally:
        process.kill()
        process.wait()
    return json.loads(json.dumps(replies).replace(str(folder), "DIR"))


def _comparable(nodes: list) -> list:
    """Nodes without their generated names (QEMU's are partly random), in a fixed order."""
    plain = [{k: v for k, v in node.items() if k != "node-name"} for node in nodes]
    for node in plain:  # actual-size is the host file system's business
        image = node["image"]
        while image is not None:
            image.pop("actual-size", None)
            image = image.get("backing-image")
    return sorted(plain, key=lambda n: (n["file"], n["drv"]))


def test_named_block_nodes_as_qemu(tmp_path):
    qemu, arctern = (_named_nodes_session(e, tmp_path) for e in ("qemu", "arctern"))
    for index in range(3):
        assert _comparable(arctern[index]) == _comparable(qemu[index]), index
    assert arctern[3] == qemu[3] == "Invalid parameter type for 'flat', expected: boolean"
    names = [node["node-name"] for node in arctern[0]]
    assert len(set(names)) == len(names) == len(qemu[0]) == 6  # two images and one raw, each
    assert all(name.startswith("#block") for name in names)  # on a file node


def test_query_block_as_qemu(tmp_path):
    qemu, arctern = (_named_nodes_session(e, tmp_path)[4] for e in ("qemu", "arctern"))
    assert all("qdev" not in drive for drive in qemu)  # no device uses these drives
    for drive in arctern:
        assert drive["inserted"].pop("active") is True  # Arctern's own field
    assert [d["device"] for d in arctern] == [d["device"] for d in qemu] == ["top", "odd"]
    for drive in (*arctern, *qemu):
        (drive["inserted"],) = _comparable([drive["inserted"]])
    assert arctern == qemu


def _two_qcow2_session(emulator: str, tmp: Path) -> list:
    folder = tmp / emulator
    folder.mkdir()
    command = [*emulator_command(emulator), "-nodefaults", "-display", "none", "-S"]
    command += ["-kernel", str(KERNEL), "-qmp", f"unix:{folder}/qmp,server=on,wait=off"]
    for drive in ("a0", "b0"):
        path = folder / f"{drive}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1M"], check=True)
        command += ["-drive", f"file={path},if=none,id={drive},format=qcow2"]
    requests = [
        _hmp("snapshot_blkdev_internal a0 both"),
        _hmp("snapshot_blkdev_internal b0 both"),
        _hmp("snapshot_blkdev_internal b0 only-b"),
        _hmp("info snapshots"),
        ("blockdev-snapshot-delete-internal-sync", {"device": "b0", "id": "1", "name": "both"}),
        _hmp("info snapshots"),
    ]
    process = _start(command, folder / "qmp")
    try:
        return asyncio.run(replies_to(folder / "qmp", requests))
    finally:
        process.kill()
        process.wait()


def test_info_snapshots_on_every_disk_as_qemu(tmp_path):
    qemu, arctern = (_two_qcow2_session(e, tmp_path) for e in ("qemu", "arctern"))
    assert [_undated(r) for r in arctern] == [_undated(r) for r in qemu]
    assert "--        both" in qemu[3]["return"]  # on all disks: QEMU shows no ID
