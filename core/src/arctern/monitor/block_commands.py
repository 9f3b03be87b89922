"""block_resize and internal snapshots of a running machine's drives, as QEMU 7.2's QMP.

``block_resize`` truncates through the BlockBackend, whose resize listeners
tell the device model (virtio-blk raises a configuration-change interrupt
and shows the new capacity). ``blockdev-snapshot-internal-sync`` and
``blockdev-snapshot-delete-internal-sync`` use the format driver's snapshot
hooks on the drive's root node; as in QEMU the snapshot holds the disk only,
so the run state does not matter, but the drive must be writable.

Drives are found by their ``-drive`` id or by the node-name of their root
node (as query-named-block-nodes shows it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from arctern.block.driver import BlockDriver, SnapshotError
from arctern.errors import ArcternError
from arctern.monitor.commands import QMPError, command

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

#: QEMU's BDRV_MAX_LENGTH: the largest image size, INT64_MAX aligned down to 1 GiB.
_MAX_LENGTH = ((1 << 63) - 1) & ~((1 << 30) - 1)
#: QEMU keeps a snapshot name in 256 bytes, the last one a NUL.
_NAME_BYTES = 255


def find_drive(mon: Monitor, device: str | None, node_name: str | None = None) -> Any:
    """The BlockBackend of ``device``; QEMU's bdrv_lookup_bs error when there is none."""
    drives = getattr(mon.machine, "drives", {})
    backend = drives.get(device) if device else None
    if backend is None and node_name:
        node = mon.node_names.find(node_name)
        backend = next((b for b in drives.values() if node is not None and b.node is node), None)
    if backend is None:
        raise QMPError(f"Cannot find device='{device or ''}' nor node-name='{node_name or ''}'")
    return backend


def _without_filename(message: str, filename: str) -> str:
    """A driver's message without the leading ``'FILE': `` qemu-img prints and QMP does not."""
    return message.removeprefix(f"'{filename}': ")


@command("block_resize", device=(str, False), **{"node-name": (str, False)}, size=(int, True))
def block_resize(mon: Monitor, args: dict) -> None:
    backend = find_drive(mon, args.get("device"), args.get("node-name"))
    size = args["size"]
    if size < 0:
        raise QMPError("Parameter 'size' expects a >0 size")
    if size > _MAX_LENGTH:
        raise QMPError(f"offset({size}) exceeds maximum({_MAX_LENGTH})")
    if backend.read_only:
        raise QMPError("Image is read-only")
    try:
        backend.truncate(size)
    except ArcternError as exc:
        raise QMPError(_without_filename(str(exc), backend.filename)) from None


def _snapshot_driver(backend: Any, device: str) -> BlockDriver:
    """The format driver of a drive that may take internal snapshots (QEMU's checks, in order)."""
    if backend.read_only:
        raise QMPError(f"Device '{device}' is read only")
    driver = backend.node.driver
    if type(driver).snapshot_create is BlockDriver.snapshot_create:
        raise QMPError(
            f"Block format '{backend.node.format_name}' used by device '{device}' "
            "does not support internal snapshots"
        )
    return driver


def snapshots_of(backend: Any) -> list[dict[str, Any]] | None:
    """The drive's internal snapshots (SnapshotInfo); None if its format cannot hold any."""
    driver = backend.node.driver
    if type(driver).snapshot_create is BlockDriver.snapshot_create:
        return None
    return list(driver.info().snapshots)


@command("blockdev-snapshot-internal-sync", device=(str, True), name=(str, True))
def blockdev_snapshot_internal_sync(mon: Monitor, args: dict) -> None:
    device, name = args["device"], args["name"]
    backend = find_drive(mon, device, device)
    driver = _snapshot_driver(backend, device)
    if not name:
        raise QMPError("Name is empty")
    if any(s["name"] == name for s in driver.info().snapshots):
        raise QMPError(f"Snapshot with name '{name}' already exists on device '{device}'")
    now_us = time.time_ns() // 1000  # QEMU dates snapshots with g_get_real_time()
    try:
        driver.snapshot_create(
            name.encode(errors="surrogateescape")[:_NAME_BYTES].decode(errors="surrogateescape"),
            date_sec=now_us // 1_000_000,
            date_nsec=now_us % 1_000_000 * 1000,
            vm_clock_nsec=mon.machine.clock.ns(),
        )
    except SnapshotError as exc:
        raise QMPError(f"Failed to create snapshot '{name}' on device '{device}': {exc}") from None


@command(
    "blockdev-snapshot-delete-internal-sync", device=(str, True), id=(str, False), name=(str, False)
)
def blockdev_snapshot_delete_internal_sync(mon: Monitor, args: dict) -> dict:
    device, snapshot_id, name = args["device"], args.get("id"), args.get("name")
    backend = find_drive(mon, device, device)
    if snapshot_id is None and name is None:
        raise QMPError("Name or id must be provided")
    snapshots = snapshots_of(backend)
    if snapshots is None:
        raise QMPError("Failed to get a snapshot list: Operation not supported")
    found = [
        s
        for s in snapshots
        if (snapshot_id is None or s["id"] == snapshot_id) and (name is None or s["name"] == name)
    ]
    if not found:
        raise QMPError(
            f"Snapshot with id '{_or_null(snapshot_id)}' and name '{_or_null(name)}' "
            f"does not exist on device '{device}'"
        )
    if backend.read_only:  # what qcow2 says when it may not rewrite its snapshot table
        raise QMPError("Failed to remove snapshot from snapshot list: Operation not permitted")
    try:
        backend.node.driver.snapshot_delete(found[0]["id"], found[0]["name"])
    except SnapshotError as exc:
        raise QMPError(str(exc)) from None
    return found[0]


def _or_null(text: str | None) -> str:
    return "null" if text is None else text  # QEMU's STR_OR_NULL
