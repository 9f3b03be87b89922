"""What the arctern-img subcommands share: option parsing and opening images."""

from __future__ import annotations

import getopt
from collections.abc import Sequence
from typing import Any

from arctern.errors import ArcternError, BlockError, UsageError

HELP_HINT = "Try 'arctern-img --help' for more information"


def parse_args(
    args: Sequence[str], short: str, long: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], list[str]]:
    """GNU getopt (options may follow operands) with qemu-img's error wording."""
    try:
        return getopt.gnu_getopt(list(args), short, list(long))
    except getopt.GetoptError as exc:
        dash = "--" if len(exc.opt) > 1 else "-"
        if "requires argument" in exc.msg:
            raise UsageError(
                f"option '{dash}{exc.opt}' requires an argument; {HELP_HINT}"
            ) from None
        if "must not have an argument" in exc.msg:
            raise UsageError(f"option '--{exc.opt}' doesn't allow an argument") from None
        raise UsageError(f"unrecognized option '{dash}{exc.opt}'; {HELP_HINT}") from None


def one_filename(rest: Sequence[str]) -> str:
    """The single image operand of a subcommand, or qemu-img's usage error."""
    if len(rest) != 1:
        raise UsageError(f"Expecting one image file name; {HELP_HINT}")
    return rest[0]


def output_format(value: str) -> str:
    """The value of ``--output``: ``human`` or ``json``."""
    if value not in ("human", "json"):
        raise UsageError(f"--output must be used with human or json as argument.; {HELP_HINT}")
    return value


def parse_option_string(text: str) -> dict[str, str]:
    """``key=value,key2=value2`` as QemuOpts reads it (``,,`` is a literal comma)."""
    options: dict[str, str] = {}
    items = [item.replace("\0", ",") for item in text.replace(",,", "\0").split(",")]
    for item in items:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            if key in ("help", "?"):
                value = ""
            else:
                raise UsageError(f"Invalid parameter '{key}'")
        options[key] = value
    return options


def wants_help(options: dict[str, str]) -> bool:
    """True if ``-o`` asked for the list of options (``-o help`` or ``-o ?``)."""
    return "help" in options or "?" in options


def open_image(filename: str, **kwargs: Any):
    """Open ``filename`` or fail with qemu-img's ``Could not open 'FILE': reason``."""
    from arctern import block

    try:
        return block.open_image(filename, **kwargs)
    except ArcternError as exc:
        raise type(exc)(_could_not_open(filename, exc)) from exc
    except OSError as exc:
        raise BlockError(_could_not_open(filename, exc.strerror or str(exc))) from exc


def _could_not_open(filename: str, reason: object) -> str:
    """qemu-img's prefix on every open error, even one that already has the file
    protocol's own (``Could not open 'F': Could not open 'F': No such file or directory``)."""
    return f"Could not open '{filename}': {reason}"


def open_failure(filename: str, exc: BaseException) -> str:
    """Why :func:`open_image` failed, without the prefix it adds: what qemu-io and
    qemu-img's other messages (``Could not open new backing file 'F': ...``) print."""
    return str(exc).removeprefix(f"Could not open '{filename}': ")


def image_opts(fmt: str | None, force_share: bool, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for :func:`open_image` common to the read-only subcommands."""
    return {"fmt": fmt, "read_only": True, "force_share": force_share, **extra}


def format_driver_class(fmt: str) -> type:
    """The registered driver class for format ``fmt`` or qemu-img's ``Unknown file format``."""
    from arctern.plugins import default_registry

    drivers = default_registry().block_drivers
    cls = drivers.get(fmt)
    if cls is None or getattr(cls, "protocol", False):
        raise UsageError(f"Unknown file format '{fmt}'")
    return cls


def discover_block_plugins_only() -> None:
    """Make the process-wide registry hold just the block plugins.

    The image tools need nothing else, and importing the CPU, device and
    migration plugins costs a tenth of a second at every start. Called only when
    a tool runs as a program: in a test process other code expects them all.
    """
    from arctern.plugins import Registry, set_default_registry

    set_default_registry(Registry().discover(["block"]))
