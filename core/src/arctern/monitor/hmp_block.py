"""HMP's block commands: block_resize, snapshot_blkdev_internal,
snapshot_delete_blkdev_internal and ``info snapshots``, worded as QEMU 7.2's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arctern.cli.img_info import snapshot_header, snapshot_line
from arctern.monitor.block_commands import snapshots_of
from arctern.monitor.hmp import INFO, HMPError, hmp_command, size_mib

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor


def _usage(name: str, problem: str) -> HMPError:
    return HMPError(f'{problem}\nTry "help {name}" for more information')


def _words(name: str, words: list[str], needed: list[str], optional: int = 0) -> list[str]:
    """QEMU's argument checks: ``needed`` names what each missing word would have been."""
    if len(words) < len(needed):
        raise _usage(name, f"{name}: {needed[len(words)]} expected")
    if len(words) > len(needed) + optional:
        raise _usage(name, f"{name}: extraneous characters at the end of line")
    return words


@hmp_command("block_resize", "block_resize device size -- resize a block image")
def _block_resize(mon: Monitor, words: list[str]) -> str:
    if len(words) == 1:
        raise _usage("block_resize", "invalid size")
    device, text = _words("block_resize", words, ["block device name", "size"])
    size = size_mib(text)
    if size is None or size >= 1 << 63:  # QEMU's HMP takes sizes up to INT64_MAX
        raise _usage("block_resize", "invalid size")
    mon.execute("block_resize", {"device": device, "size": size})
    return ""


@hmp_command(
    "snapshot_blkdev_internal",
    "snapshot_blkdev_internal device name -- take an internal snapshot of device",
)
def _snapshot_blkdev_internal(mon: Monitor, words: list[str]) -> str:
    device, name = _words("snapshot_blkdev_internal", words, ["string", "string"])
    mon.execute("blockdev-snapshot-internal-sync", {"device": device, "name": name})
    return ""


@hmp_command(
    "snapshot_delete_blkdev_internal",
    "snapshot_delete_blkdev_internal device name [id] -- delete an internal snapshot of device",
)
def _snapshot_delete_blkdev_internal(mon: Monitor, words: list[str]) -> str:
    words = _words("snapshot_delete_blkdev_internal", words, ["string", "string"], optional=1)
    args = {"device": words[0], "name": words[1]}
    if len(words) == 3:
        args["id"] = words[2]
    mon.execute("blockdev-snapshot-delete-internal-sync", args)
    return ""


def _table(snapshots: list[dict[str, Any]]) -> str:
    return snapshot_header() + "\n" + "".join(f"{snapshot_line(s)}\n" for s in snapshots)


def _info_snapshots(mon: Monitor) -> str:
    """Snapshots on every writable drive (loadable), then each drive's own (partial) ones."""
    drives = [
        (name, backend)
        for name, backend in getattr(mon.machine, "drives", {}).items()
        if not backend.read_only
    ]
    lists = {name: snapshots_of(backend) for name, backend in drives}
    vmstate = next((found for found in lists.values() if found is not None), None)
    if vmstate is None:
        return "no block device can store vmstate for snapshot\n"
    if not any(lists.values()):
        return "There is no snapshot available.\n"
    on_all = [
        s
        for s in vmstate
        if all(
            found is not None and any(t["name"] == s["name"] for t in found)
            for found in lists.values()
        )
    ]
    names = {s["name"] for s in on_all}
    out = "List of snapshots present on all disks:\n"
    out += _table([s | {"id": "--"} for s in on_all]) if on_all else "None\n"
    for name, found in lists.items():
        partial = [s for s in found or [] if s["name"] not in names]
        if partial:
            out += f"\nList of partial (non-loadable) snapshots on '{name}':\n" + _table(partial)
    return out


INFO["snapshots"] = _info_snapshots
