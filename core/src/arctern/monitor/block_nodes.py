"""query-named-block-nodes: every node of every drive as QEMU 7.2's BlockDeviceInfo.

QEMU names the nodes the user left unnamed ``#block`` + a counter + two
random digits; Arctern's nodes get such names from the monitor the first
time they are listed (clients may only compare them, never predict them).
Throttling is not implemented: every bps/iops limit reads 0, as in QEMU
without limits.
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
    info.pop("snapshots", None)  # QEMU lists them in query-block's image only
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
