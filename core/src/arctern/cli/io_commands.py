"""qemu-io's command language: read, write, discard, flush, map, open, close, quit, help.

Each command prints exactly what qemu-io 7.2 prints (reports on stdout, a few
complaints on stderr) and returns True on success. A failed command does not
stop the script; the exit status of arctern-io is 1 if any command failed.
"""

from __future__ import annotations

import getopt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arctern.block.driver import STATUS_ALLOCATED, STATUS_DATA, STATUS_ZERO
from arctern.errors import ArcternError, UsageError

from .img_buffers import filled_with
from .img_common import open_failure, open_image
from .img_units import io_size, io_time, parse_size

#: Largest request qemu-io accepts (QEMU's BDRV_REQUEST_MAX_BYTES).
REQUEST_MAX = 2147483136
DEFAULT_WRITE_PATTERN = 0xCD


class CommandFailed(Exception):
    """A command failed; its message (if any) goes to stdout as qemu-io prints it."""


@dataclass
class Command:
    name: str
    func: Callable[..., bool]
    argmin: int
    argmax: int  # -1: no limit
    args: str | None  # None: no argument synopsis at all (qemu-io prints one space less)
    oneline: str
    altname: str | None = None
    needs_file: bool = True

    def usage(self) -> str:
        synopsis = "" if self.args is None else f"{self.args} "
        return f"{self.name} {synopsis}-- {self.oneline}"


@dataclass
class IOState:
    """The open image and how to open the next one."""

    backend: Any = None
    open_defaults: dict[str, Any] = field(default_factory=dict)
    quit: bool = False


def cvtnum(text: str) -> int:
    """A byte count or offset (``64k``, ``1M``); qemu-io's parsing error on anything else."""
    try:
        value = parse_size(text)
    except UsageError:
        raise CommandFailed(
            f"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {text}"
        ) from None
    return value


def parse_pattern(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFF:
        raise CommandFailed(f"{text} is not a valid pattern byte")
    return value


#: C's isalnum() in the C locale: ASCII letters and digits show as themselves, the rest as '.'.
_PRINTABLE = bytes(b if chr(b).isascii() and chr(b).isalnum() else ord(".") for b in range(256))


def hexdump(data: memoryview, offset: int) -> str:
    """qemu-io's ``-v`` dump: 16 bytes a line, hex then printable characters."""
    raw = bytes(data)
    text = raw.translate(_PRINTABLE).decode("ascii")
    return "\n".join(
        f"{offset + start:08x}:  {raw[start : start + 16].hex(' ')}  {text[start : start + 16]}"
        for start in range(0, len(raw), 16)
    )


def report(op: str, seconds: float, offset: int, count: int, total: int, parsable: bool) -> str:
    """The two report lines of qemu-io (or its one ``-C`` line)."""
    seconds = max(seconds, 1e-9)
    if parsable:
        return f"{total},1,{io_time(seconds, fixed=True)},{total / seconds:.3f},{1 / seconds:.3f}"
    return (
        f"{op} {total}/{count} bytes at offset {offset}\n"
        f"{io_size(total)}, 1 ops; {io_time(seconds)} "
        f"({io_size(total / seconds)}/sec and {1 / seconds:.4f} ops/sec)"
    )


def _getopt(cmd: Command, argv: list[str], spec: str) -> tuple[dict[str, str], list[str]]:
    """POSIX getopt (options first), as qemu-io's commands parse their arguments."""
    try:
        opts, rest = getopt.getopt(argv, spec)
    except getopt.GetoptError as exc:
        print(f"{cmd.name}: invalid option -- '{exc.opt}'", file=sys.stderr)
        raise CommandFailed(cmd.usage()) from None
    return {opt[1]: value for opt, value in opts}, rest


def _range(cmd: Command, rest: list[str]) -> tuple[int, int]:
    if len(rest) != 2:
        raise CommandFailed(cmd.usage())
    return cvtnum(rest[0]), cvtnum(rest[1])


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _io_error(op: str, exc: ArcternError) -> CommandFailed:
    return CommandFailed(f"{op} failed: {exc}")


def read_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    opts, rest = _getopt(cmd, argv, "bCl:pP:qs:v")
    offset, count = _range(cmd, rest)
    if count > REQUEST_MAX:
        raise CommandFailed(f"length cannot exceed {REQUEST_MAX}, given {rest[1]}")
    pattern = parse_pattern(opts["P"]) if "P" in opts else None
    pattern_offset = cvtnum(opts["s"]) if "s" in opts else 0
    pattern_count = cvtnum(opts["l"]) if "l" in opts else count - pattern_offset
    if pattern is None and ("s" in opts or "l" in opts):
        raise CommandFailed(cmd.usage())
    if pattern_offset + pattern_count > count:
        raise CommandFailed(
            f"pattern verification range exceeds end of read data ({pattern_offset} + "
            f"{pattern_count} > {count})"
        )
    return _read(state, cmd, opts, offset, count, pattern, pattern_offset, pattern_count)


def readv_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    """readv and aio_read: several lengths read as one request (Arctern's I/O is synchronous)."""
    opts, rest = _getopt(cmd, argv, "CiqvP:")
    offset, count = _vector(cmd, rest)
    pattern = parse_pattern(opts["P"]) if "P" in opts else None
    ok = _read(state, cmd, opts, offset, count, pattern, 0, count)
    return ok or cmd.name.startswith("aio_")  # qemu-io: an aio request succeeds once submitted


def _read(
    state: IOState,
    cmd: Command,
    opts: dict[str, str],
    offset: int,
    count: int,
    pattern: int | None,
    pattern_offset: int,
    pattern_count: int,
) -> bool:
    buf = memoryview(bytearray(count))
    try:
        seconds = _timed(lambda: state.backend.preadinto(offset, buf))
    except ArcternError as exc:
        raise _io_error(cmd.name, exc) from exc
    ok = True
    if pattern is not None:
        region = buf[pattern_offset : pattern_offset + pattern_count]
        if not filled_with(region, pattern):
            print(
                f"Pattern verification failed at offset {offset + pattern_offset}, "
                f"{pattern_count} bytes"
            )
            ok = False
    if "q" not in opts:
        if "v" in opts:
            print(hexdump(buf, offset))
        print(report("read", seconds, offset, count, count, "C" in opts))
    return ok


def write_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    opts, rest = _getopt(cmd, argv, "bcCfnP:quzs:")
    offset, count = _range(cmd, rest)
    _check_write_flags(opts)
    if "c" in opts and "z" in opts:
        raise CommandFailed("-c and -z cannot be specified at the same time")
    if count > REQUEST_MAX and "z" not in opts:
        raise CommandFailed(f"length cannot exceed {REQUEST_MAX} without -n, given {rest[1]}")
    return _write(state, cmd, opts, offset, count)


def writev_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    """writev and aio_write: several lengths written as one request."""
    opts, rest = _getopt(cmd, argv, "CfiquzP:")
    offset, count = _vector(cmd, rest)
    _check_write_flags(opts)
    return _write(state, cmd, opts, offset, count)


def _check_write_flags(opts: dict[str, str]) -> None:
    if ("z" in opts) + ("P" in opts) + ("s" in opts) > 1:
        raise CommandFailed("Only one of -z, -P, and -s can be specified at the same time")
    if "u" in opts and "z" not in opts:
        raise CommandFailed("-u requires -z to be specified")


def _write(state: IOState, cmd: Command, opts: dict[str, str], offset: int, count: int) -> bool:
    backend = state.backend
    try:
        if "z" in opts:
            seconds = _timed(lambda: backend.pwrite_zeroes(offset, count, may_unmap="u" in opts))
        else:
            data = _write_source(opts, count)
            writer = _compressed_writer(backend) if "c" in opts else backend.pwrite
            seconds = _timed(lambda: writer(offset, data))
        if "f" in opts:
            backend.flush()
    except ArcternError as exc:
        raise _io_error(cmd.name, exc) from exc
    if "q" not in opts:
        print(report("wrote", seconds, offset, count, count, "C" in opts))
    return True


def _vector(cmd: Command, rest: list[str]) -> tuple[int, int]:
    """Offset and total length of ``off len [len..]``."""
    if len(rest) < 2:
        raise CommandFailed(cmd.usage())
    offset, lengths = cvtnum(rest[0]), [cvtnum(text) for text in rest[1:]]
    if sum(lengths) > REQUEST_MAX:
        raise CommandFailed(f"length cannot exceed {REQUEST_MAX}, given {' '.join(rest[1:])}")
    return offset, sum(lengths)


def length_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    print(io_size(state.backend.length))
    return True


def truncate_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    opts, rest = _getopt(cmd, argv, "m:")
    if len(rest) != 1:
        raise CommandFailed(cmd.usage())
    try:
        state.backend.truncate(cvtnum(rest[0]), preallocation=opts.get("m", "off"))
    except ArcternError as exc:
        raise CommandFailed(f"truncate: {exc}") from exc
    return True


def _write_source(opts: dict[str, str], count: int) -> memoryview:
    if "s" in opts:
        try:
            with open(opts["s"], "rb") as source:
                data = source.read(count)
        except OSError as exc:
            raise CommandFailed(f"Failed to open file {opts['s']}: {exc.strerror}") from exc
        if len(data) < count:
            raise CommandFailed(f"Failed to read {count} bytes from {opts['s']}")
        return memoryview(data)
    pattern = parse_pattern(opts["P"]) if "P" in opts else DEFAULT_WRITE_PATTERN
    return memoryview(bytes([pattern]) * count)


def _compressed_writer(backend: Any) -> Callable[[int, memoryview], None]:
    writer = getattr(backend.node.driver, "pwrite_compressed", None)
    if writer is None:
        raise CommandFailed("write failed: Operation not supported")
    return writer


def discard_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    opts, rest = _getopt(cmd, argv, "Cq")
    offset, count = _range(cmd, rest)
    try:
        seconds = _timed(lambda: state.backend.pdiscard(offset, count))
    except ArcternError as exc:
        raise _io_error("discard", exc) from exc
    if "q" not in opts:
        print(report("discard", seconds, offset, count, count, "C" in opts))
    return True


def flush_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    try:
        state.backend.flush()
    except ArcternError as exc:
        raise _io_error("flush", exc) from exc
    return True


def map_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    """Allocated (in the top image) and unallocated runs, merged."""
    backend = state.backend
    node, length, offset = backend.node, backend.length, 0
    while offset < length:
        allocated = None
        start = offset
        while offset < length:
            try:
                status = node.block_status(offset, length - offset)
            except ArcternError as exc:
                print(f"arctern-io: Failed to get allocation status: {exc}", file=sys.stderr)
                return False
            here = bool(status.flags & (STATUS_ALLOCATED | STATUS_DATA | STATUS_ZERO))
            if allocated is not None and here != allocated:
                break
            allocated = here
            offset += max(1, min(status.length, length - offset))
        num = offset - start
        what = "    allocated" if allocated else "not allocated"
        print(f"{io_size(num)} ({num:#x}) bytes {what} at offset {io_size(start)} ({start:#x})")
    return True


def open_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    if state.backend is not None:
        print("file open already, try 'help close'", file=sys.stderr)
        return False
    opts, rest = _getopt(cmd, argv, "rCnkUt:d:o:f:")
    if len(rest) != 1:
        raise CommandFailed(cmd.usage())
    settings = dict(state.open_defaults)
    settings.update(open_settings(opts))
    return open_device(state, rest[0], settings)


def open_settings(opts: dict[str, str]) -> dict[str, Any]:
    """open_image keyword arguments from qemu-io's open/command-line flags."""
    settings: dict[str, Any] = {}
    if "r" in opts:
        settings["read_only"] = True
    if "U" in opts:
        settings["force_share"] = True
    if "n" in opts:
        settings["cache"] = "none"
    if "t" in opts:
        settings["cache"] = opts["t"]
    if "d" in opts:
        settings["discard"] = opts["d"]
    if "f" in opts:
        settings["fmt"] = opts["f"]
    for item in filter(None, opts.get("o", "").split(",")):
        key, _, value = item.partition("=")
        if key in ("driver", "format"):
            settings["fmt"] = value
        else:
            raise CommandFailed(f"Invalid parameter '{key}'")
    return settings


def open_device(state: IOState, filename: str, settings: dict[str, Any]) -> bool:
    try:
        state.backend = open_image(filename, **settings)
    except ArcternError as exc:
        print(
            f"arctern-io: can't open device {filename}: {open_failure(filename, exc)}",
            file=sys.stderr,
        )
        return False
    return True


def close_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    state.backend.close()
    state.backend = None
    return True


def quit_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    state.quit = True
    return True


def help_f(state: IOState, cmd: Command, argv: list[str]) -> bool:
    if argv:
        found = find_command(argv[0])
        if found is None:
            raise CommandFailed(f"command {argv[0]} not found")
        print(found.usage())
        return True
    for command in COMMANDS:
        print(command.usage())
    print("\nUse 'help commandname' for extended help.")
    return True


COMMANDS = [
    Command("aio_flush", flush_f, 0, 0, None, "completes all outstanding aio requests"),
    Command(
        "aio_read",
        readv_f,
        2,
        -1,
        "[-Ciqv] [-P pattern] off len [len..]",
        "asynchronously reads a number of bytes",
    ),
    Command(
        "aio_write",
        writev_f,
        2,
        -1,
        "[-Cfiquz] [-P pattern] off len [len..]",
        "asynchronously writes a number of bytes",
    ),
    Command("close", close_f, 0, 0, None, "close the current open file", "c"),
    Command(
        "discard",
        discard_f,
        2,
        -1,
        "[-Cq] off len",
        "discards a number of bytes at a specified offset",
        "d",
    ),
    Command("flush", flush_f, 0, 0, None, "flush all in-core file state to disk", "f"),
    Command(
        "help", help_f, 0, 1, "[command]", "help for one or all commands", "?", needs_file=False
    ),
    Command("length", length_f, 0, 0, None, "gets the length of the current file", "l"),
    Command("map", map_f, 0, 0, "", "prints the allocated areas of a file"),
    Command(
        "open",
        open_f,
        1,
        -1,
        "[-rCnkU] [-f fmt] [-t cache] [-d discard] [-o options] [path]",
        "open the file specified by path",
        "o",
        needs_file=False,
    ),
    Command("quit", quit_f, 0, 0, None, "exit the program", "q", needs_file=False),
    Command(
        "read",
        read_f,
        2,
        -1,
        "[-abCqv] [-P pattern [-s off] [-l len]] off len",
        "reads a number of bytes at a specified offset",
        "r",
    ),
    Command(
        "readv",
        readv_f,
        2,
        -1,
        "[-Cqv] [-P pattern] off len [len..]",
        "reads a number of bytes at a specified offset",
    ),
    Command(
        "truncate",
        truncate_f,
        1,
        3,
        "[-m prealloc_mode] off",
        "truncates the current file at the given offset",
        "t",
    ),
    Command(
        "write",
        write_f,
        2,
        -1,
        "[-bcCfnquz] [-P pattern | -s source_file] off len",
        "writes a number of bytes at a specified offset",
        "w",
    ),
    Command(
        "writev",
        writev_f,
        2,
        -1,
        "[-Cfq] [-P pattern] off len [len..]",
        "writes a number of bytes at a specified offset",
    ),
]


def find_command(name: str) -> Command | None:
    for command in COMMANDS:
        if name in (command.name, command.altname):
            return command
    return None


def run_command(state: IOState, line: str) -> bool:
    """Run one command line; False if it failed."""
    argv = line.split()
    if not argv:
        return True
    cmd = find_command(argv[0])
    if cmd is None:
        print(f'command "{argv[0]}" not found', file=sys.stderr)
        return False
    if cmd.needs_file and state.backend is None:
        print("no file open, try 'help open'", file=sys.stderr)
        return False
    nargs = len(argv) - 1
    if nargs < cmd.argmin or (cmd.argmax != -1 and nargs > cmd.argmax):
        print(_count_error(cmd, argv[0], nargs), file=sys.stderr)
        return False
    try:
        return cmd.func(state, cmd, argv[1:])
    except CommandFailed as exc:
        print(exc)
        return False
    except ArcternError as exc:  # e.g. a corrupt image found while flushing: next command
        print(f"arctern-io: {exc}", file=sys.stderr)
        return False


def _count_error(cmd: Command, name: str, nargs: int) -> str:
    if cmd.argmax == -1:
        expected = f"at least {cmd.argmin}"
    elif cmd.argmin == cmd.argmax:
        expected = f"{cmd.argmin}"
    else:
        expected = f"between {cmd.argmin} and {cmd.argmax}"
    return f"bad argument count {nargs} to {name}, expected {expected} arguments"
