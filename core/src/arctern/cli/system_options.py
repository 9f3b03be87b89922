"""The options of arctern-system (qemu-system's), and their translation into a MachineConfig."""

from __future__ import annotations

import argparse

from arctern import __version__
from arctern.errors import UsageError
from arctern.machine.launch import ChardevConfig, DeviceConfig, DriveConfig, MachineConfig
from arctern.machine.props import parse_bool, parse_size
from arctern.monitor.options import add_monitor_options
from arctern.qemu_opts import parse_opts

PROG = "arctern-system"
DEFAULT_MACHINE = "microvm"
DESCRIPTION = (
    "Run a machine with qemu-system-i386's options: the same guest gives the same serial "
    "output and exit status. Help listings: -M help, -device help, -cpu help, -d help."
)
VERSION = f"{PROG} version {__version__} (qemu-system 7.2 options)"
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
    parser = _Parser(prog=PROG, description=DESCRIPTION, allow_abbrev=False)
    add = parser.add_argument
    add("-M", "-machine", dest="machines", action="append", default=[], metavar="NAME[,PROP=VALUE]")
    add("-version", "--version", action="version", version=VERSION)
    add("-pidfile", metavar="FILE", help="write the process id to FILE (removed at exit)")
    add("-name", metavar="NAME", help="the guest's name (query-name); also guest=NAME,...")
    add("-uuid", metavar="UUID", help="the machine's UUID (query-uuid, info uuid)")
    add("-cpu", metavar="MODEL")
    add("-icount", metavar="[shift=]N[,sleep=on|off]", help="guest time counts instructions")
    add("-accel", metavar="tcg", help="accelerator: Arctern is TCG-like, 'tcg' is the only one")
    add("-enable-kvm", dest="enable_kvm", action="store_true", help="refused: no KVM here")
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
    add(
        "-nographic",
        action="store_true",
        help="no display; the default serial port and monitor share the terminal (mon:stdio)",
    )
    add(
        "-echr",
        metavar="CODE",
        help="the escape key of the terminal multiplexer (default 1: C-a; 20 is C-t)",
    )
    add("-S", dest="stopped", action="store_true", help="do not start the guest (wait for 'cont')")
    add("-no-reboot", dest="no_reboot", action="store_true", help="exit instead of rebooting")
    add("-no-shutdown", dest="no_shutdown", action="store_true", help="pause at power-off")
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


def _icount(text: str | None) -> tuple[int | None, bool]:
    """``-icount [shift=]N[,sleep=on|off][,align=off]`` -> (shift, sleep)."""
    if text is None:
        return None, True
    opts = parse_opts(text, "shift")
    shift = opts.get("shift", "0")
    if shift == "auto":
        raise UsageError(f"-icount {text}: shift=auto is not supported; give a number 0-10")
    if not shift.isdigit() or int(shift) > 10:
        raise UsageError(f"-icount {text}: shift must be a number from 0 to 10")
    try:
        sleep = parse_bool(opts.get("sleep", "on"))
        if parse_bool(opts.get("align", "off")):
            raise UsageError(f"-icount {text}: align=on is not supported")
    except ValueError:
        raise UsageError(f"-icount {text}: sleep and align take 'on' or 'off'") from None
    return int(shift), sleep


def _check_accel(args: argparse.Namespace) -> None:
    if args.enable_kvm:
        raise UsageError("-enable-kvm: Arctern emulates in software; drop it (or -accel tcg)")
    if args.accel is not None:
        accel = parse_opts(args.accel, "accel")["accel"]
        if accel != "tcg":
            raise UsageError(f"-accel {args.accel}: Arctern emulates in software; only tcg exists")


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
    """``-chardev null|stdio|file,path=P|socket,...,id=ID[,mux=on]`` as a ``-serial`` spelling.

    ``mux=on`` lets a serial port and ``-mon chardev=ID`` share it. Sockets:
    ``path=P`` (unix) or ``host=H,port=N`` (tcp), ``server=on``, ``wait=off``.
    """
    opts = parse_opts(text, "backend")
    backend, id = opts.pop("backend"), opts.pop("id", None)
    try:
        mux = parse_bool(opts.pop("mux", "off"))
    except ValueError:
        raise UsageError(f"-chardev {text}: Parameter 'mux' expects 'on' or 'off'") from None
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
        if path:
            where = f"unix:{path}"
        elif opts.get("port"):
            where = f"tcp:{opts.get('host', '')}:{opts['port']}"
        else:
            raise UsageError(f"-chardev {text}: give path=... (unix) or host=...,port=... (tcp)")
        spec = f"{where},server={opts.get('server', 'off')},wait={opts.get('wait', 'on')}"
    else:
        spec = backend
    return ChardevConfig(id, spec, origin=f"-chardev {text}", mux=mux)


def _device(text: str) -> DeviceConfig:
    opts = parse_opts(text, "driver")
    driver = opts.pop("driver")
    return DeviceConfig(
        driver, opts, id=opts.pop("id", None), bus=opts.pop("bus", None), origin=f"-device {text}"
    )


def _default_monitor(args: argparse.Namespace) -> bool:
    """QEMU adds a monitor unless -nodefaults, -monitor, -mon, -qmp or -serial mon:... is given."""
    given = args.monitor or args.mon or args.qmp
    return not (args.nodefaults or given or any(s.startswith("mon:") for s in args.serials))


def _serials(args: argparse.Namespace) -> list[str]:
    if args.serials:
        return [s for s in args.serials if s != "none"]
    if args.nodefaults:
        return []
    if not args.nographic:
        return ["null"]
    # -nographic: the serial port and the default monitor share the terminal
    return ["mon:stdio"] if _default_monitor(args) else ["stdio"]


def monitors(args: argparse.Namespace) -> list[str]:
    """The -monitor options, with QEMU's default: -nographic with a -serial puts it on stdio."""
    if args.nographic and args.serials and _default_monitor(args):
        return [*args.monitor, "stdio"]
    return args.monitor


def escape_char(args: argparse.Namespace) -> int | None:
    """``-echr CODE``: a character code, decimal or 0x-hexadecimal (as QEMU's strtol)."""
    if args.echr is None:
        return None
    try:
        code = int(args.echr, 0)
    except ValueError:
        code = -1
    if not 0 <= code <= 255:
        raise UsageError(f"-echr {args.echr}: expected a character code from 0 to 255")
    return code


def guest_name(args: argparse.Namespace) -> str | None:
    """``-name NAME`` or ``-name guest=NAME[,...]``."""
    if args.name is None:
        return None
    return parse_opts(args.name, "guest").get("guest")


def machine_options(args: argparse.Namespace) -> dict[str, str]:
    """Every -M/-machine merged in order, as QEMU does (``-M microvm -machine acpi=off``)."""
    merged = {"type": DEFAULT_MACHINE}
    for text in args.machines:
        opts = parse_opts(text, "type" if "=" not in text.split(",", 1)[0] else None)
        merged.update(opts)
    return merged


def config_from_args(args: argparse.Namespace) -> MachineConfig:
    """Translate parsed options into the description :func:`launch` builds."""
    machine_opts = machine_options(args)
    if args.display not in (None, "none"):
        raise UsageError(f"-display {args.display}: Arctern has no graphical display; use none")
    _check_smp(args.smp)
    _check_accel(args)
    icount_shift, icount_sleep = _icount(args.icount)
    serials = _serials(args)
    if not args.serials and "stdio" in serials and "stdio" in monitors(args):
        # the default serial port (no option of the user's to name, as QEMU)
        raise UsageError("cannot use stdio by multiple character devices")
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
        serials=serials,
        no_reboot=args.no_reboot,
        no_shutdown=args.no_shutdown,
        icount_shift=icount_shift,
        icount_sleep=icount_sleep,
        incoming=bool(args.incoming),
        stdio_users=monitors(args).count("stdio"),
    )
