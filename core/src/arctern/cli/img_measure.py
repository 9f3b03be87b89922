"""``arctern-img measure``: how big an image would be, as qemu-img measure reports it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arctern.errors import UsageError

from .img_common import open_image, output_format, parse_args
from .img_create import target_options, typed_options
from .img_json import dumps
from .img_status import walk
from .img_units import size_argument

LABELS = (("required", "required size"), ("fully-allocated", "fully allocated size"))


def cmd_measure(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "hf:O:o:U", ["help", "output=", "size=", "force-share"])
    fmt, out_fmt, output, size, force_share = None, "raw", "human", None, False
    option_texts: list[str] = []
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-O":
            out_fmt = value
        elif opt == "-o":
            option_texts.append(value)
        elif opt == "--output":
            output = output_format(value)
        elif opt == "--size":
            size = size_argument(value)
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img measure [--output=ofmt] [-O output_fmt] [-o options] "
                "[--size N | [-f fmt] [-U] filename]"
            )
            return 0
    target = target_options(out_fmt, option_texts)
    if target is None:
        return 0
    cls, options = target
    if size is not None and rest:
        raise UsageError("--size N cannot be used together with a filename.")
    if size is None and len(rest) != 1:
        raise UsageError("Either --size N or one filename must be specified.")
    data = bitmaps = None
    if rest:
        size, data, bitmaps = _source(rest[0], fmt, force_share)
    figures = cls.measure(size, typed_options(options), data, bitmaps)
    if output == "json":
        print(dumps(figures))
    else:
        lines = [f"{label}: {figures[key]}" for key, label in LABELS]
        if "bitmaps" in figures:
            lines.append(f"bitmaps size: {figures['bitmaps']}")
        print("\n".join(lines))
    return 0


def _source(filename: str, fmt: str | None, force_share: bool):
    """The source's size, its data runs and its persistent bitmaps (None if it has none)."""
    backend = open_image(filename, fmt=fmt, read_only=True, force_share=force_share)
    try:
        size = backend.length
        data = [
            (entry.start, entry.length)
            for entry in walk(backend.node, 0, size)
            if entry.data and entry.present and not entry.zero
        ]
        return size, data, _persistent_bitmaps(backend.node.driver.info().format_specific)
    finally:
        backend.close()


def _persistent_bitmaps(specific: dict[str, Any] | None) -> list[tuple[str, int]] | None:
    """(name, granularity) of the bitmaps a qcow2 v3 source keeps; None for other images,
    which cannot hold persistent bitmaps (qemu-img then prints no bitmaps line)."""
    if not specific or specific.get("type") != "qcow2" or specific["data"].get("compat") != "1.1":
        return None
    return [(b["name"], b["granularity"]) for b in specific["data"].get("bitmaps", [])]
