"""arctern-system: run a machine with qemu-system's options, messages and exit statuses.

A guest that runs under ``qemu-system-i386 -M microvm ...`` runs unchanged
under ``arctern-system -M microvm ...`` with the same options. The process
exits with the guest's status: 0 after a power-off, ``(v << 1) | 1`` after
``isa-debug-exit`` receives v, 1 after an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from arctern.errors import ArcternError, MachineError, UsageError
from arctern.machine.launch import (
    ChardevConfig,
    DeviceConfig,
    DriveConfig,
    MachineConfig,
    launch,
)
from arctern.machine.machine import Machine
from arctern.machine.props import parse_bool, parse_size
from arctern.monitor.options import add_monitor_options, attach_monitor
from arctern.plugins import default_registry
from arctern.qemu_opts import parse_opts

from .common import run_cli
from .debug_log import setup_debug_log
from .system_help import DEFAULT_MACHINE, help_text

PROG = "arctern-system"
log = logging.getLogger(__name__)
CHARDEV_BACKENDS = ("null", "stdio", "file", "socket")
DRIVE_KEYS = {"file", "format", "if", "id", "cache", "readonly", "discard", "detect-zeroes"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, as every Arctern tool
        raise UsageError(message)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            raise UsageError(f"{extra[0]}: invalid option")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__, allow_abbrev=False)
    add = parser.add_argument
    add("-M", "-machine", dest="machine", metavar="NAME[,PROP=VALUE...]", default=DEFAULT_MACHINE)
    add("-cpu", metavar="MODEL")
    add("-m", dest="memory", metavar="SIZE", help="RAM size (MiB without a suffix)")
    add("-smp", metavar="N", help="number of CPUs (only 1)")
    add("-nodefaults", action="store_true", help="no default serial port")
    add("-global", dest="globals", action="append", default=[], metavar="DRIVER.PROP=VALUE")
    add("-kernel", metavar="FILE", help="Multiboot ELF kernel")
    add("-append", metavar="CMDLINE", default="", help="kernel command line")
    add(
        "-initrd", metavar="FILE[,FILE...]", help="Multiboot modules ('FILE ARGS', comma-separated)"
    )
    add("-drive", dest="drives", action="append", default=[], metavar="OPTIONS")
    add("-device", dest="devices", action="append", default=[], metavar="DRIVER[,PROP=VALUE...]")
    add("-chardev", dest="chardevs", action="append", default=[], metavar="BACKEND,id=ID[,...]")
    add("-serial", dest="serials", action="append", default=[], metavar="DEV")
    add("-display", metavar="TYPE", help="only 'none'")
    add("-nographic", action="store_true", help="no display; default serial port on stdio")
    add("-S", dest="stopped", action="store_true", help="do not start the guest (wait for 'cont')")
    add("-no-reboot", dest="no_reboot", action="store_true", help="exit instead of rebooting")
    add("-d", dest="log_items", metavar="ITEM[,...]", help="log items ('-d help' lists them)")
    add("-D", dest="log_file", metavar="FILE", help="write -d logs to FILE")
    add_monitor_options(parser)
    return parser


# --- option translation --------------------------------------------------------


def _ram_size(text: str | None) -> int | None:
    if text is None:
        return None
    opts = parse_opts(text, "size")
    size = opts.get("size")
    if size is None:
        return None
    try:
        value = parse_size(size + "M" if size.strip()[-1:].isdigit() else size)
    except ValueError:
        raise UsageError(
            f"-m {text}: Parameter 'size' expects a non-negative number below 2^64"
        ) from None
    if value == 0:
        return None  # QEMU: -m 0 means the default
    page = 4096
    return (value + page - 1) // page * page


def _check_smp(text: str | None) -> None:
    if text is None:
        return
    opts = parse_opts(text, "cpus")
    for key in ("cpus", "maxcpus", "sockets", "cores", "threads", "dies"):
        value = opts.get(key, "1")
        if not value.isdigit():
            raise UsageError(f"-smp {text}: Parameter '{key}' expects a number")
        if int(value) > 1:
            raise UsageError(f"-smp {text}: Arctern emulates one CPU; use -smp 1")


def _global(text: str) -> tuple[str, str, str]:
    target, sep, value = text.partition("=")
    driver, dot, prop = target.rpartition(".")
    if not sep or not dot or not driver or not prop:
        raise UsageError(f"-global {text}: Invalid format: expected DRIVER.PROPERTY=VALUE")
    return driver, prop, value


def _drive(text: str) -> DriveConfig:
    opts = parse_opts(text)
    for key in opts:
        if key not in DRIVE_KEYS:
            fmt = opts.get("format", "raw")
            raise UsageError(
                f"-drive {text}: Block format '{fmt}' does not support the option '{key}'"
            )
    if "file" not in opts:
        raise UsageError(f'-drive {text}: A block device must be specified for "file"')
    try:
        read_only = parse_bool(opts.get("readonly", "off"))
    except ValueError:
        raise UsageError(f"-drive {text}: Parameter 'read-only' expects 'on' or 'off'") from None
    return DriveConfig(
        opts["file"],
        format=opts.get("format"),
        interface=opts.get("if", "none"),
        id=opts.get("id"),
        cache=opts.get("cache", "writeback"),
        read_only=read_only,
        discard=opts.get("discard", "ignore"),
        detect_zeroes=opts.get("detect-zeroes", "off"),
        origin=f"-drive {text}",
    )


def _chardev(text: str) -> ChardevConfig:
    """``-chardev null|stdio|file,path=P|socket,path=P[,server=on][,wait=off],id=ID``."""
    opts = parse_opts(text, "backend")
    backend, id = opts.pop("backend"), opts.pop("id", None)
    if backend not in CHARDEV_BACKENDS:
        raise UsageError(f"-chardev {text}: '{backend}' is not a valid char driver name")
    if not id:
        raise UsageError(f"-chardev {text}: chardev: no id specified")
    path = opts.get("path", "").replace(",", ",,")
    if backend == "file":
        if not path:
            raise UsageError(f"-chardev {text}: chardev: file: no filename given")
        spec = f"file:{opts['path']}"
    elif backend == "socket":
        if not path:
            raise UsageError(f"-chardev {text}: only unix sockets (path=...) are supported")
        spec = f"unix:{path},server={opts.get('server', 'off')},wait={opts.get('wait', 'on')}"
    else:
        spec = backend
    return ChardevConfig(id, spec, origin=f"-chardev {text}")


def _device(text: str) -> DeviceConfig:
    opts = parse_opts(text, "driver")
    driver = opts.pop("driver")
    return DeviceConfig(
        driver, opts, id=opts.pop("id", None), bus=opts.pop("bus", None), origin=f"-device {text}"
    )


def _serials(args: argparse.Namespace) -> list[str]:
    if args.serials:
        return [s for s in args.serials if s != "none"]
    if args.nodefaults:
        return []
    return ["mon:stdio"] if args.nographic else ["null"]  # QEMU's defaults


def config_from_args(args: argparse.Namespace) -> MachineConfig:
    """Translate parsed options into the description :func:`launch` builds."""
    machine_opts = parse_opts(args.machine, "type")
    if args.display not in (None, "none"):
        raise UsageError(f"-display {args.display}: Arctern has no graphical display; use none")
    _check_smp(args.smp)
    return MachineConfig(
        machine_opts.pop("type"),
        machine_options=machine_opts,
        cpu=args.cpu,
        ram_size=_ram_size(args.memory),
        kernel=args.kernel,
        append=args.append,
        initrd=args.initrd,
        drives=[_drive(text) for text in args.drives],
        devices=[_device(text) for text in args.devices],
        chardevs=[_chardev(text) for text in args.chardevs],
        globals=[_global(text) for text in args.globals],
        serials=_serials(args),
        no_reboot=args.no_reboot,
        incoming=bool(args.incoming),
        stdio_users=args.monitor.count("stdio"),
    )


# --- running ---------------------------------------------------------------------


def _stop_on_signals(machine: Machine) -> dict[str, int]:
    """SIGTERM/SIGINT/SIGHUP end the run like QEMU: 'terminating on signal N', status 0."""
    caught: dict[str, int] = {}

    def handler(signum: int, _frame: Any) -> None:
        caught["signal"] = signum
        machine.request_exit(0)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)
    return caught


def _run(machine: Machine, *, start: bool) -> int | None:
    """Run the main loop; an emulator bug ends the run with one line, not a traceback."""
    try:
        return machine.run(start=start)
    except ArcternError:
        raise
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        cpu = machine.cpus[0] if machine.cpus else None
        where = f" at eip {cpu.eip:#x}" if hasattr(cpu, "eip") else ""
        raise MachineError(
            f"internal error while running the guest{where}: {type(exc).__name__}: {exc} "
            "(ARCTERN_DEBUG=1 shows the traceback)"
        ) from exc


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    registry = default_registry()
    text = help_text(args, registry)
    if text is not None:
        print(text)
        return 0
    config = config_from_args(args)
    setup_debug_log(args.log_items, args.log_file)
    logging.getLogger("arctern.machine.chardev").setLevel(logging.INFO)  # "waiting for ..."
    machine = launch(config, registry=registry)
    monitor = None
    try:
        monitor = attach_monitor(
            machine,
            qmp=args.qmp,
            monitor=args.monitor,
            incoming=args.incoming,
            autostart=not args.stopped,
        )
        caught = _stop_on_signals(machine)
        status = _run(machine, start=not args.stopped and not args.incoming)
        if "signal" in caught:
            print(f"{PROG}: terminating on signal {caught['signal']}", file=sys.stderr)
        return status or 0
    finally:
        if monitor is not None:
            monitor.close()
        machine.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
