"""``arctern-img resize``: absolute or ``+``/``-`` relative sizes, shrinking only with --shrink."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from arctern.errors import UsageError

from .img_common import one_filename, open_image, parse_args
from .img_units import SIZE_MAX, size_argument

PREALLOCATION = ("off", "metadata", "falloc", "full")


def new_size(current: int, text: str) -> int:
    """The size ``text`` asks for: absolute, or relative to ``current`` with ``+``/``-``."""
    sign = text[:1] if text[:1] in "+-" else ""
    amount = size_argument(text[1:] if sign else text)
    size = current + amount if sign == "+" else current - amount if sign == "-" else amount
    if not 0 <= size <= SIZE_MAX:
        raise UsageError(f"New image size must be between 0 and {SIZE_MAX} bytes")
    return size


def cmd_resize(args: Sequence[str]) -> int:
    if not args or args[-1] in ("-h", "--help"):
        print(
            "usage: arctern-img resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] "
            "filename [+ | -]size"
        )
        return 0
    # The size goes last and may start with '-': take it before option parsing, as qemu-img does.
    *head, size_text = args
    opts, rest = parse_args(head, "f:q", ["preallocation=", "shrink"])
    fmt, quiet, shrink, prealloc = None, False, False, "off"
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-q":
            quiet = True
        elif opt == "--shrink":
            shrink = True
        elif opt == "--preallocation":
            if value not in PREALLOCATION:
                raise UsageError(f"Invalid preallocation mode '{value}'")
            prealloc = value
    backend = open_image(one_filename(rest), fmt=fmt)
    try:
        size = new_size(backend.length, size_text)
        if size < backend.length and not shrink:
            # As qemu-img: the refusal, then why it exists.
            print(
                "arctern-img: Use the --shrink option to perform a shrink operation.\n"
                "arctern-img: warning: Shrinking an image will delete all data beyond the "
                "shrunken image's end. Before performing such an operation, make sure there "
                "is no important data there.",
                file=sys.stderr,
            )
            return 1
        backend.truncate(size, preallocation=prealloc)
        backend.flush()
    finally:
        backend.close()
    if not quiet:
        print("Image resized.")
    return 0
