"""``arctern-img info``: qemu-img info's human and JSON reports, optionally of the whole chain."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from arctern.block.image import backing_path
from arctern.errors import ImageFormatError

from .img_common import image_opts, one_filename, open_image, output_format, parse_args
from .img_json import dumps, qdict_order
from .img_units import human_size


def actual_size(node: Any) -> int | None:
    """Bytes the image occupies on the host (the file's allocated blocks)."""
    try:
        return node.actual_size()
    except OSError:
        return None


def image_info(filename: str, backend: Any) -> dict[str, Any]:
    """One image's report with qemu-img's field names (the QAPI ImageInfo)."""
    node = backend.node
    facts = node.driver.info()
    info: dict[str, Any] = {"virtual-size": backend.length, "filename": filename}
    if facts.cluster_size is not None:
        info["cluster-size"] = facts.cluster_size
    info["format"] = node.format_name
    size = actual_size(node)
    if size is not None:
        info["actual-size"] = size
    info["dirty-flag"] = bool(facts.dirty)
    if facts.format_specific is not None:
        info["format-specific"] = facts.format_specific
    if facts.backing_filename:
        info["backing-filename"] = facts.backing_filename
        info["full-backing-filename"] = backing_path(filename, facts.backing_filename)
        if facts.backing_format:
            info["backing-filename-format"] = facts.backing_format
    if facts.snapshots:
        info["snapshots"] = facts.snapshots
    return info


def chain_infos(filename: str, fmt: str | None, force_share: bool, chain: bool) -> list[dict]:
    """Reports of the image and, with ``chain``, of every backing file below it."""
    infos: list[dict[str, Any]] = []
    seen: set[str] = set()
    while True:
        real = os.path.realpath(filename)
        if real in seen:
            raise ImageFormatError(f"Backing file '{filename}' creates an infinite loop.")
        seen.add(real)
        backend = open_image(filename, **image_opts(fmt, force_share, backing=False))
        try:
            info = image_info(filename, backend)
        finally:
            backend.close()
        infos.append(info)
        if not chain or "full-backing-filename" not in info:
            return infos
        filename = info["full-backing-filename"]
        fmt = info.get("backing-filename-format")


def _dump_specific(value: Any, indent: int, lines: list[str]) -> None:
    """QEMU's ``dump_qobject``: nested keys with dashes shown as spaces, 4 spaces a level."""
    pad = " " * (4 * indent)
    if isinstance(value, dict):
        for key, item in value.items():
            name = key.replace("-", " ")
            if isinstance(item, dict | list):
                lines.append(f"{pad}{name}:")
                _dump_specific(item, indent + 1, lines)
            else:
                lines.append(f"{pad}{name}: {_scalar(item)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                lines.append(f"{pad}[{i}]:")
                _dump_specific(item, indent + 1, lines)
            else:  # a scalar item shares its index's line (bitmap flags: "[0]: auto")
                lines.append(f"{pad}[{i}]: {_scalar(item)}")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def snapshot_header() -> str:
    return f"{'ID':<10}{'TAG':<17}{'VM SIZE':>8}{'DATE':>20}{'VM CLOCK':>13}{'ICOUNT':>11}"


def snapshot_line(snapshot: dict[str, Any]) -> str:
    """One row of qemu-img info's snapshot list (the date in local time, as QEMU prints it)."""
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.get("date-sec", 0)))
    clock_ns = snapshot.get("vm-clock-sec", 0) * 1_000_000_000 + snapshot.get("vm-clock-nsec", 0)
    secs = clock_ns // 1_000_000_000
    clock = (
        f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}."
        f"{clock_ns // 1_000_000 % 1000:03d}"
    )
    icount = str(snapshot["icount"]) if "icount" in snapshot else ""
    size = human_size(snapshot.get("vm-state-size", 0))
    return (
        f"{snapshot.get('id', ''):<9} {snapshot.get('name', ''):<16} {size:>8}{date:>20}"
        f"{clock:>13}{icount:>11}"
    )


def human_info(info: dict[str, Any]) -> str:
    """qemu-img info's human report of one image."""
    size = info.get("actual-size")
    lines = [
        f"image: {info['filename']}",
        f"file format: {info['format']}",
        f"virtual size: {human_size(info['virtual-size'])} ({info['virtual-size']} bytes)",
        f"disk size: {human_size(size) if size is not None else 'unavailable'}",
    ]
    if "cluster-size" in info:
        lines.append(f"cluster_size: {info['cluster-size']}")
    if info.get("dirty-flag"):
        lines.append("cleanly shut down: no")
    if "backing-filename" in info:
        line = f"backing file: {info['backing-filename']}"
        if info["full-backing-filename"] != info["backing-filename"]:
            line += f" (actual path: {info['full-backing-filename']})"
        lines.append(line)
    if "backing-filename-format" in info:
        lines.append(f"backing file format: {info['backing-filename-format']}")
    if info.get("snapshots"):
        lines += ["Snapshot list:", snapshot_header()]
        lines += [snapshot_line(snapshot) for snapshot in info["snapshots"]]
    if "format-specific" in info:
        lines.append("Format specific information:")
        _dump_specific(qdict_order(info["format-specific"]).get("data", {}), 1, lines)
    return "\n".join(lines)


def cmd_info(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "f:hU", ["help", "output=", "backing-chain", "force-share"])
    fmt, force_share, chain, output = None, False, False, "human"
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt == "--backing-chain":
            chain = True
        elif opt == "--output":
            output = output_format(value)
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"
            )
            return 0
    infos = chain_infos(one_filename(rest), fmt, force_share, chain)
    if output == "json":
        print(dumps(infos if chain else infos[0]))
    else:
        print("\n\n".join(human_info(info) for info in infos))
    return 0
