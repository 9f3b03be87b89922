"""block_resize and internal snapshots through the monitor, on a running machine's drives."""

from __future__ import annotations

import pytest

from arctern.block.image import create_image, open_image
from arctern.monitor.commands import QMPError
from arctern.monitor.monitor import Monitor


@pytest.fixture
def monitor(make_machine, image, registry, tmp_path):
    machine = make_machine(image)  # running, with the raw drive disk0
    qcow2 = str(tmp_path / "q.qcow2")
    create_image(qcow2, "qcow2", 1 << 20, registry=registry)
    machine.add_drive("q0", open_image(qcow2, fmt="qcow2", registry=registry))
    mon = Monitor(machine, registry=registry)
    yield mon
    mon.close()


def test_block_resize_grows_the_drive_and_tells_its_listeners(monitor):
    backend = monitor.machine.drives["disk0"]
    heard = []
    backend.resize_listeners.append(lambda: heard.append(backend.length))
    monitor.execute("block_resize", {"device": "disk0", "size": 3 << 20})
    assert backend.length == 3 << 20 and heard == [3 << 20]
    assert monitor.hmp("block_resize disk0 4") == ""  # HMP sizes are in MiB
    assert backend.length == 4 << 20


def test_block_resize_errors_name_no_file(monitor):
    with pytest.raises(QMPError, match="^The new size must be a multiple of 512$"):
        monitor.execute("block_resize", {"device": "q0", "size": 1000})
    with pytest.raises(QMPError, match="^Cannot find device='x' nor node-name=''$"):
        monitor.execute("block_resize", {"device": "x", "size": 512})


def test_snapshots_of_a_running_drive(monitor):
    assert monitor.machine.runstate == "running"
    monitor.execute("blockdev-snapshot-internal-sync", {"device": "q0", "name": "before"})
    monitor.machine.drives["q0"].pwrite(0, b"after")
    monitor.execute("blockdev-snapshot-internal-sync", {"device": "q0", "name": "later"})
    lines = monitor.hmp("info snapshots").split("\r\n")
    assert lines[:3] == ["List of snapshots present on all disks:", "None", ""]
    assert [line.split()[:2] for line in lines[5:7]] == [["1", "before"], ["2", "later"]]
    deleted = monitor.execute("blockdev-snapshot-delete-internal-sync", {"device": "q0", "id": "1"})
    assert (deleted["id"], deleted["name"], deleted["vm-state-size"]) == ("1", "before", 0)
    names = [s["name"] for s in monitor.machine.drives["q0"].node.driver.info().snapshots]
    assert names == ["later"]


def test_commands_are_listed(monitor):
    names = {c["name"] for c in monitor.execute("query-commands")}
    assert {
        "block_resize",
        "blockdev-snapshot-internal-sync",
        "blockdev-snapshot-delete-internal-sync",
    } <= names


def test_named_nodes_keep_their_names_and_resize_by_name(monitor):
    first = monitor.execute("query-named-block-nodes")
    assert [(n["drv"], n["file"].rsplit("/", 1)[1]) for n in first] == [
        ("raw", "disk.raw"),
        ("file", "disk.raw"),
        ("qcow2", "q.qcow2"),
        ("file", "q.qcow2"),
    ]
    again = monitor.execute("query-named-block-nodes", {"flat": True})
    assert [n["node-name"] for n in again] == [n["node-name"] for n in first]
    monitor.execute("block_resize", {"node-name": first[2]["node-name"], "size": 2 << 20})
    assert monitor.machine.drives["q0"].length == 2 << 20


def test_an_inactive_drive_refuses_resize(make_machine, image, registry):
    """On a migration destination the images belong to the source (QEMU 7.2 aborts here)."""
    mon = Monitor(make_machine(image, incoming=True), registry=registry)
    try:
        with pytest.raises(QMPError, match="is inactive"):
            mon.execute("block_resize", {"device": "disk0", "size": 2 << 20})
        assert mon.machine.drives["disk0"].length == 1 << 20
    finally:
        mon.close()
