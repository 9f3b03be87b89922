"""arctern-io: qemu-io for Arctern images, for scripts and tests.

    arctern-io [-f fmt] [-r] [-U] [-n] [-t cache] [-d discard] [-c command]... [file]

Runs the ``-c`` commands in order, or reads commands from stdin (one a line,
after the ``arctern-io> `` prompt) when there is none. Exit status 1 if the
image could not be opened or any command failed.

qemu-io's -k, -i (AIO engine), -C (copy-on-read), -m (misaligned buffers) and
-T (trace) are accepted and change nothing; -s (temporary snapshot) is
refused rather than ignored, since ignoring it would write to the image.
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Sequence

from arctern.errors import UsageError

from .common import run_cli
from .img import guarded
from .img_common import discover_block_plugins_only
from .io_commands import IOState, open_device, open_settings, run_command

PROMPT = "arctern-io> "
USAGE = __doc__.strip() + "\n"

LONG_OPTIONS = {
    "cmd=": "c",
    "format=": "f",
    "read-only": "r",
    "force-share": "U",
    "nocache": "n",
    "cache=": "t",
    "discard=": "d",
    "help": "h",
    "version": "V",
}


def parse_command_line(argv: Sequence[str]) -> tuple[dict, list[str], list[str]]:
    """Open settings, the ``-c`` commands and the positional arguments."""
    try:
        opts, rest = getopt.gnu_getopt(list(argv), "c:d:f:hknrCmi:t:T:UV", list(LONG_OPTIONS))
    except getopt.GetoptError as exc:
        dash = "--" if len(exc.opt) > 1 else "-"
        raise UsageError(f"invalid option -- '{dash}{exc.opt}'") from None
    flags: dict[str, str] = {}
    commands: list[str] = []
    for opt, value in opts:
        name = opt[2:]
        key = opt[1:] if len(opt) == 2 else LONG_OPTIONS.get(name) or LONG_OPTIONS[name + "="]
        if key == "c":
            commands.append(value)
        else:
            flags[key] = value
    return flags, commands, rest


def body(argv: Sequence[str]) -> int:
    flags, commands, rest = parse_command_line(argv)
    if "h" in flags:
        print(USAGE, end="")
        return 0
    if "V" in flags:
        from importlib.metadata import version

        print(f"arctern-io version {version('arctern')}")
        return 0
    if len(rest) > 1:
        raise UsageError(f"too many arguments: {' '.join(rest[1:])}")
    # qemu-io opens images with discard=unmap (BDRV_O_UNMAP) unless -d says otherwise
    state = IOState(open_defaults={"discard": "unmap", **open_settings(flags)})
    if rest and not open_device(state, rest[0], state.open_defaults):
        return 1
    failed = False
    try:
        lines = commands if commands else _stdin_lines()
        for line in lines:
            failed |= not run_command(state, line)
            if state.quit:
                break
    finally:
        if state.backend is not None:
            state.backend.close()
        sys.stdout.flush()
    return 1 if failed else 0


def _stdin_lines():
    while True:
        sys.stdout.write(PROMPT)
        sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            return
        yield line


def main(argv: Sequence[str] | None = None) -> int:
    standalone = argv is None  # run as a program, not called from Python

    def program(args: Sequence[str]) -> int:
        if standalone:
            discover_block_plugins_only()
        return guarded(body, args)

    return run_cli("arctern-io", program, argv)


if __name__ == "__main__":
    raise SystemExit(main())
