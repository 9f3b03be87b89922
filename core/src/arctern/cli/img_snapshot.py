"""``arctern-img snapshot``: list, create, apply or delete internal snapshots, as qemu-img.

As qemu-img 7.2: one of ``-l``, ``-a``, ``-c``, ``-d`` (none: the image is only
opened read-write); ``-l`` opens the image read-only (``-U`` is allowed with it
alone), the others read-write with the image locked. The format is probed, or
given with ``--image-opts driver=FMT,file.filename=FILE``. ``-d`` looks the
snapshot up by name, ``-a`` by ID and then by name; names need not be unique.
"""

from __future__ import annotations

import getopt
import os
import time
from collections.abc import Sequence
from typing import Any

from arctern.block.driver import BlockDriver, SnapshotError
from arctern.errors import BlockError, UsageError

from .img_common import HELP_HINT, one_filename, open_image, parse_option_string
from .img_info import snapshot_header, snapshot_line

USAGE = (
    "usage: arctern-img snapshot [--object objectdef] [--image-opts] [-U] [-q] "
    "[-l | -a snapshot | -c snapshot | -d snapshot] filename"
)
_ACTIONS = ("-l", "-a", "-c", "-d")


def _parse(args: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """qemu-img snapshot's getopt (``:la:c:d:hqU``), with its own wording of errors."""
    try:
        return getopt.gnu_getopt(
            list(args), "la:c:d:hqU", ["help", "object=", "image-opts", "force-share"]
        )
    except getopt.GetoptError as exc:
        dash = "--" if len(exc.opt) > 1 else "-"
        if "requires argument" in exc.msg:
            missing = f"missing argument for option '{dash}{exc.opt}'"
            raise UsageError(f"{missing}; {HELP_HINT}") from None
        if "must not have an argument" in exc.msg:
            raise UsageError(f"option '--{exc.opt}' doesn't allow an argument") from None
        raise UsageError(f"unrecognized option '{dash}{exc.opt}'; {HELP_HINT}") from None


def check_object(definition: str) -> None:
    """Validate ``--object`` as qemu-img does; Arctern has no use for a secret."""
    items = definition.split(",")
    qom_type = None
    if items and "=" not in items[0]:
        qom_type, items = items[0], items[1:]
    props = parse_option_string(",".join(items))
    qom_type = props.pop("qom-type", qom_type)
    if not qom_type:
        raise UsageError("Parameter 'qom-type' is missing")
    if qom_type != "secret":
        raise UsageError(f"Parameter 'qom-type' does not accept value '{qom_type}'")
    if "id" not in props:
        raise UsageError("Parameter 'id' is missing")
    if "file" not in props and "data" not in props:
        raise UsageError("Either 'file' or 'data' must be provided")


def image_opts(spec: str) -> tuple[str, dict[str, Any]]:
    """The filename and open arguments an ``--image-opts`` string names."""
    first = spec.split(",", 1)[0]
    if first and "=" not in first:
        raise BlockError(
            f"Could not open '{spec}': Cannot find device='{first}' nor node-name='{first}'"
        )
    options = parse_option_string(spec)
    fmt = options.pop("driver", None)
    if options.get("file.driver", "file") == "file":
        options.pop("file.driver", None)
    filename = options.pop("file.filename", None)
    if filename is None:
        raise BlockError(f"Could not open '{spec}': A block device must be specified for \"file\"")
    return filename, {"fmt": fmt, "options": options or None}


def list_snapshots(driver: BlockDriver) -> list[str]:
    """qemu-img's snapshot table (nothing at all when there are none)."""
    snapshots = driver.info().snapshots
    if not snapshots:
        return []
    return ["Snapshot list:", snapshot_header(), *map(snapshot_line, snapshots)]


def create(driver: BlockDriver, name: str) -> None:
    """Take a snapshot dated now; failures read as qemu-img's (``-errno (strerror)``)."""
    now = time.time_ns()
    try:
        # qemu-img's name buffer holds 255 bytes; its date has microseconds.
        driver.snapshot_create(
            name.encode(errors="surrogateescape")[:255].decode(errors="surrogateescape"),
            date_sec=now // 1_000_000_000,
            date_nsec=now // 1000 % 1_000_000 * 1000,
            icount=0,
        )
    except SnapshotError as exc:
        raise BlockError(
            f"Could not create snapshot '{name}': {-exc.errno} ({os.strerror(exc.errno)})"
        ) from exc


def apply(driver: BlockDriver, id_or_name: str) -> None:
    try:
        driver.snapshot_goto(id_or_name)
    except SnapshotError as exc:
        reason = f"Failed to load snapshot: {os.strerror(exc.errno)}"
        if type(driver).snapshot_goto is BlockDriver.snapshot_goto:
            reason = "Block driver does not support snapshots"
        raise BlockError(f"Could not apply snapshot '{id_or_name}': {reason}") from exc


def delete(driver: BlockDriver, name: str) -> None:
    """Delete the first snapshot called ``name`` (qemu-img finds it by name only)."""
    found = [s for s in driver.info().snapshots if s.get("name") == name]
    if not found:
        raise BlockError(f"Could not delete snapshot '{name}': snapshot not found")
    try:
        driver.snapshot_delete(found[0]["id"], name)
    except SnapshotError as exc:
        raise BlockError(f"Could not delete snapshot '{name}': {exc}") from exc


def cmd_snapshot(args: Sequence[str]) -> int:
    opts, rest = _parse(args)
    action, argument, force_share, by_options = None, "", False, False
    for opt, value in opts:
        if opt in ("-h", "--help"):
            print(USAGE)
            return 0
        if opt in _ACTIONS:
            if action:
                raise UsageError(f"Cannot mix '-l', '-a', '-c', '-d'; {HELP_HINT}")
            action, argument = opt, value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt == "--object":
            check_object(value)
        elif opt == "--image-opts":
            by_options = True
    filename = one_filename(rest)
    kwargs: dict[str, Any] = {}
    if by_options:
        filename, kwargs = image_opts(filename)
    backend = open_image(filename, read_only=action == "-l", force_share=force_share, **kwargs)
    try:
        driver = backend.node.driver
        if action == "-l":
            for line in list_snapshots(driver):
                print(line)
        elif action == "-c":
            create(driver, argument)
        elif action == "-a":
            apply(driver, argument)
        elif action == "-d":
            delete(driver, argument)
    finally:
        backend.close()
    return 0
