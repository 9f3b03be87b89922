"""query-block and query-named-block-nodes: drives and nodes as QEMU 7.2's BlockDeviceInfo.

QEMU names the nodes the user left unnamed ``#block`` + a counter + two
random digits; Arctern's nodes get such names from the monitor the first
time they are listed (clients may only compare them, never predict them).
Throttling is not implemented: every bps/iops limit reads 0, as in QEMU
without limits. query-block's ``inserted`` also says whether the image is
``active`` (Arctern's: false on a migration destination until the hand-over);
it has no ``qdev`` path yet.
"""

from __future__ import annotations

import itertools
import random
import weakref
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from arctern.cli.img_info import image_info
from arctern.monitor.commands import command

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

_SECTOR = 512
_LIMITS = ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr")


class NodeNames:
    """The node-names a monitor gave the nodes of its drives (QEMU's generated ids)."""

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._counter = itertools.count()

    def of(self, node: Any) -> str:
        name = self._names.get(node)
        if name is None:
            name = f"#block{next(self._counter)}{random.randrange(100):02d}"
            self._names[node] = name
        return name

    def find(self, name: str) -> Any:
        return next((node for node, known in self._names.items() if known == name), None)


def _image(node: Any, flat: bool) -> dict[str, Any]:
    # QEMU counts a node's size in whole sectors: a 1000-byte raw file shows 1024
    length = -(-node.getlength() // _SECTOR) * _SECTOR
    info = image_info(node.filename, SimpleNamespace(node=node, length=length))
    if not flat and node.backing is not None:
        info["backing-image"] = _image(node.backing, flat)
    return info


def device_info(names: NodeNames, node: Any, detect_zeroes: str, flat: bool) -> dict[str, Any]:
    """QEMU's BlockDeviceInfo of one node."""
    # QEMU counts the depth along the backing images it reports: none when flat
    depth = 0 if flat else sum(1 for _ in node.iter_chain()) - 1
    info: dict[str, Any] = {
        "file": node.filename,
        "node-name": names.of(node),
        "ro": bool(node.read_only),
        "drv": node.format_name,
        "backing_file_depth": depth,
        "encrypted": False,
        "detect_zeroes": detect_zeroes,
        **dict.fromkeys(_LIMITS, 0),
        "image": _image(node, flat),
        "cache": {
            "writeback": bool(node.cache.writeback),
            "direct": bool(node.cache.direct),
            "no-flush": bool(node.cache.no_flush),
        },
        "write_threshold": 0,
    }
    if node.backing is not None:
        info["backing_file"] = node.backing.filename
    return info


def _nodes(root: Any) -> list[Any]:
    """The root, its file child, then each backing node and its file child, in order."""
    found: list[Any] = []
    pending = [root]
    while pending:
        node = pending.pop(0)
        if node not in found:
            found.append(node)
            pending += node.children()
    return found


@command("query-named-block-nodes", flat=(bool, False))
def query_named_block_nodes(mon: Monitor, args: dict) -> list:
    flat = args.get("flat", False)
    infos = []
    for backend in getattr(mon.machine, "drives", {}).values():
        for node in _nodes(backend.node):
            zeroes = backend.detect_zeroes if node is backend.node else "off"
            infos.append(device_info(mon.node_names, node, zeroes, flat))
    return infos


def _user(mon: Monitor, backend: Any) -> Any:
    """The device model using the drive, if any."""
    devices = getattr(mon.machine, "devices", [])
    return next((d for d in devices if getattr(d, "backend", None) is backend), None)


@command("query-block")
def query_block(mon: Monitor, args: dict) -> list:
    drives = []
    for name, backend in getattr(mon.machine, "drives", {}).items():
        inserted = device_info(mon.node_names, backend.node, backend.detect_zeroes, False)
        inserted["active"] = bool(backend.active)
        drive: dict[str, Any] = {"device": name, "locked": False}
        # As QEMU: a drive no device uses counts as removable and has no I/O status
        if _user(mon, backend) is None:
            drive["removable"] = True
        else:
            drive["removable"] = False
            drive["io-status"] = mon.io_status.get(name, "ok")
        drive |= {"inserted": inserted, "type": "unknown"}
        drives.append(drive)
    return drives
