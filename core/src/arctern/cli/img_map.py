"""``arctern-img map``: where the guest's bytes live, in qemu-img map's two layouts."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from arctern.errors import ImageFormatError, UsageError

from .img_common import image_opts, one_filename, open_image, output_format, parse_args
from .img_status import MapEntry, merge, walk
from .img_units import parse_size


def json_entry(entry: MapEntry) -> str:
    """One entry exactly as qemu-img map --output=json prints it."""
    text = (
        f'{{ "start": {entry.start}, "length": {entry.length}, "depth": {entry.depth},'
        f' "present": {_bool(entry.present)}, "zero": {_bool(entry.zero)},'
        f' "data": {_bool(entry.data)}'
    )
    if entry.offset is not None:
        text += f', "offset": {entry.offset}'
    return text + "}"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _hex(value: int) -> str:
    """C's ``%#x``: no ``0x`` prefix for zero."""
    return f"{value:#x}" if value else "0"


class BatchedWriter:
    """Hands text to ``out`` in large pieces: a fragmented image has millions of map lines,
    and an unbuffered stdout (PYTHONUNBUFFERED) would make each one a system call."""

    def __init__(self, out, batch: int = 4096) -> None:
        self.out = out
        self.batch = batch
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)
        if len(self.parts) >= self.batch:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.parts))
        self.parts.clear()


def write_json(entries: Iterable[MapEntry], out) -> None:
    batched = BatchedWriter(out)
    batched.write("[")
    separator = ""
    for entry in entries:
        batched.write(separator + json_entry(entry))
        separator = ",\n"
    batched.write("]\n")
    batched.flush()


def write_human(entries: Iterable[MapEntry], out) -> None:
    """Only data runs, with qemu-img's coalescing of zero and unallocated runs."""
    batched = BatchedWriter(out)
    batched.write(f"{'Offset':<16}{'Length':<16}{'Mapped to':<16}File\n")
    try:
        for entry in merge(entries, human=True):
            if entry.data and entry.offset is None:
                raise ImageFormatError("File contains external, encrypted or compressed clusters.")
            if entry.data and not entry.zero:
                batched.write(
                    f"{_hex(entry.start):<16}{_hex(entry.length):<16}"
                    f"{_hex(entry.offset or 0):<16}{entry.filename or ''}\n"
                )
    finally:
        batched.flush()


def cmd_map(args: Sequence[str]) -> int:
    opts, rest = parse_args(
        args,
        "f:hU",
        ["help", "output=", "start-offset=", "max-length=", "force-share"],
    )
    fmt, force_share, output, start, max_length = None, False, "human", 0, None
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt == "--output":
            output = output_format(value)
        elif opt == "--start-offset":
            start = _offset(value, "start offset")
        elif opt == "--max-length":
            max_length = _offset(value, "max length")
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img map [-f fmt] [--output=ofmt] [--start-offset=OFFSET] "
                "[--max-length=LEN] [-U] filename"
            )
            return 0
    backend = open_image(one_filename(rest), **image_opts(fmt, force_share))
    try:
        end = backend.length
        if max_length is not None:
            end = min(end, start + max_length)
        entries = walk(backend.node, min(start, end), end)
        if output == "json":
            write_json(merge(entries), sys.stdout)
        else:
            write_human(entries, sys.stdout)
    finally:
        backend.close()
    return 0


def _offset(text: str, what: str) -> int:
    try:
        return parse_size(text)
    except UsageError:
        raise UsageError(f"Invalid {what} specified") from None
