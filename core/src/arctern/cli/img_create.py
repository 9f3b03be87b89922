"""``arctern-img create``: qemu-img create's options, ``-o help`` and its ``Formatting`` line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arctern.block.image import backing_path
from arctern.errors import ArcternError, UsageError

from .img_common import (
    HELP_HINT,
    format_driver_class,
    open_image,
    parse_args,
    parse_option_string,
    wants_help,
)
from .img_units import parse_size, size_argument

#: Value types of the create options qemu-img knows, for ``-o help`` and for parsing.
OPTION_TYPES = {
    "size": "size",
    "cluster_size": "size",
    "refcount_bits": "num",
    "lazy_refcounts": "bool (on/off)",
    "extended_l2": "bool (on/off)",
    "data_file_raw": "bool (on/off)",
    "encryption": "bool (on/off)",
}

#: How qemu-img 7.2 orders its ``Formatting`` line per format, and the defaults it always shows.
FORMATTING = {
    "qcow2": (
        (
            "cluster_size",
            "extended_l2",
            "preallocation",
            "compression_type",
            "size",
            "compat",
            "backing_file",
            "backing_fmt",
            "lazy_refcounts",
            "refcount_bits",
        ),
        {
            "cluster_size": "65536",
            "extended_l2": "off",
            "compression_type": "zlib",
            "lazy_refcounts": "off",
            "refcount_bits": "16",
        },
    ),
    "raw": (("size", "preallocation"), {}),
}


def formatting_line(filename: str, fmt: str, size: int, options: dict[str, str]) -> str:
    """The line qemu-img prints before creating an image."""
    order, defaults = FORMATTING.get(fmt, (("size",), {}))
    values = {**defaults, **options, "size": str(size)}
    for key, value in values.items():
        if OPTION_TYPES.get(key) == "size":
            values[key] = str(option_size(key, value))
    keys = [k for k in order if k in values] + [k for k in values if k not in order]
    return f"Formatting '{filename}', fmt={fmt} " + " ".join(f"{k}={values[k]}" for k in keys)


def options_help(fmt: str, cls: type) -> str:
    """``-o help`` text in qemu-img's layout."""
    described = dict(getattr(cls, "create_options", {}) or {})
    described.setdefault("size", "Virtual disk size")
    lines = [f"Supported {fmt} options:"]
    for name in sorted(described):
        head = f"  {name}=<{OPTION_TYPES.get(name, 'str')}>"
        lines.append(f"{head:<24} - {described[name]}")
    lines += [
        "",
        "The protocol level may support further options.",
        "Specify the target filename to include those options.",
    ]
    return "\n".join(lines)


def option_size(key: str, value: str) -> int:
    """A size-valued create option, in bytes."""
    try:
        return parse_size(value)
    except UsageError:
        raise UsageError(
            f"Parameter '{key}' expects a size (bytes, or with a suffix k, M, G, T, P or E)"
        ) from None


def typed_options(options: dict[str, str]) -> dict[str, Any]:
    """Create options with sizes, numbers and booleans converted from their text form."""
    typed: dict[str, Any] = {}
    for key, value in options.items():
        kind = OPTION_TYPES.get(key, "str")
        if kind == "size":
            typed[key] = option_size(key, value)
        elif kind == "num":
            if not value.isdigit():
                raise UsageError(f"Parameter '{key}' expects a number")
            typed[key] = int(value)
        elif kind.startswith("bool"):
            if value not in ("on", "off"):
                raise UsageError(f"Parameter '{key}' expects 'on' or 'off'")
            typed[key] = value == "on"
        else:
            typed[key] = value
    return typed


def collect_options(texts: list[str], cls: type) -> dict[str, str]:
    """Merge every ``-o`` argument and refuse names the driver does not know."""
    options: dict[str, str] = {}
    for text in texts:
        options.update(parse_option_string(text))
    known = getattr(cls, "create_options", None)
    if known and not wants_help(options):
        for key in options:
            if key not in known and key != "size":
                raise UsageError(f"Invalid parameter '{key}'")
    return options


def target_options(fmt: str, texts: list[str]) -> tuple[type, dict[str, str]] | None:
    """The driver class of format ``fmt`` and the ``-o`` options given for it.

    None once ``-o help`` (or ``-o ?``) has printed the option list: the command is done.
    """
    cls = format_driver_class(fmt)
    options = collect_options(texts, cls)
    if wants_help(options):
        print(options_help(fmt, cls))
        return None
    return cls, options


def backing_size(filename: str, backing: str, backing_fmt: str | None) -> int:
    """Virtual size of the backing file, found relative to the new image's directory."""
    backend = open_image(
        backing_path(filename, backing), fmt=backing_fmt, read_only=True, force_share=True
    )
    try:
        return backend.length
    finally:
        backend.close()


def cmd_create(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "F:b:f:ho:qu", ["help"])
    fmt, quiet, unsafe = "raw", False, False
    option_texts: list[str] = []
    cli_backing: dict[str, str] = {}
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt == "-b":
            cli_backing["backing_file"] = value
        elif opt == "-F":
            cli_backing["backing_fmt"] = value
        elif opt == "-o":
            option_texts.append(value)
        elif opt == "-q":
            quiet = True
        elif opt == "-u":
            unsafe = True
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] "
                "[-u] [-o options] filename [size]"
            )
            return 0
    target = target_options(fmt, option_texts)
    if target is None:
        return 0
    _, options = target
    options.update(cli_backing)
    if not rest:
        raise UsageError(f"Expecting image file name; {HELP_HINT}")
    if len(rest) > 2:
        raise UsageError(f"Unexpected argument: {rest[2]}; {HELP_HINT}")
    filename = rest[0]
    size = _requested_size(rest[1] if len(rest) > 1 else options.pop("size", None))
    options.pop("size", None)
    if "backing_file" in options and "backing_fmt" not in options:
        raise UsageError(f"{filename}: Backing file specified without backing format")
    if size is None:
        if "backing_file" not in options or unsafe:
            raise UsageError(f"{filename}: Image creation needs a size parameter")
        size = backing_size(filename, options["backing_file"], options.get("backing_fmt"))
    if not quiet:
        print(formatting_line(filename, fmt, size, options), flush=True)
    from arctern import block

    try:
        block.create_image(filename, fmt, size, typed_options(options))
    except ArcternError as exc:  # qemu-img names the file in front of every create error
        raise type(exc)(f"{filename}: {exc}") from exc
    return 0


def _requested_size(text: str | None) -> int | None:
    return None if text is None else size_argument(text)
