"""``arctern-img amend``: change an image's creation options in place, as qemu-img amend."""

from __future__ import annotations

from collections.abc import Sequence

from arctern.errors import UsageError

from .img_common import HELP_HINT, one_filename, open_image, parse_args, parse_option_string


def cmd_amend(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "hf:o:pqt:", ["help", "force"])
    fmt, cache = None, "writeback"
    options: dict[str, str] = {}
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-o":
            options.update(parse_option_string(value))
        elif opt == "-t":
            cache = value
        elif opt in ("-h", "--help"):
            print("usage: arctern-img amend [-p] [-q] [-f fmt] [-t cache] -o options filename")
            return 0
    if not options:
        raise UsageError(f"Must specify options (-o); {HELP_HINT}")
    backend = open_image(one_filename(rest), fmt=fmt, cache=cache)
    try:
        backend.node.driver.amend(options)
    finally:
        backend.close()
    return 0
