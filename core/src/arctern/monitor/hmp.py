"""HMP, QEMU's human monitor: its commands, for QMP's human-monitor-command and the consoles.

The interactive consoles (``-monitor stdio``, ``mon:stdio``, sockets) are
:class:`arctern.monitor.hmp_terminal.HMPTerminal`. Commands map onto the QMP
ones (:mod:`arctern.monitor.commands`) and print what QEMU 7.2 prints, so
scripts written against ``(qemu)`` prompts keep working. ``migrate`` without
``-d`` holds the prompt until the migration ends, as QEMU does; the guest and
the QMP clients carry on meanwhile.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arctern import __version__
from arctern.errors import ArcternError

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

log = logging.getLogger(__name__)

PROMPT = "(qemu) "
BANNER = f"Arctern {__version__} monitor - type 'help' for more information"

HMP_COMMANDS: dict[str, tuple[Callable[[Monitor, list[str]], str], str]] = {}
ALIASES = {"c": "cont", "q": "quit"}


class HMPError(ArcternError):
    """A usage error of an HMP command, printed as is."""


def hmp_command(name: str, usage: str):
    def register(func: Callable[[Monitor, list[str]], str]):
        HMP_COMMANDS[name] = (func, usage)
        return func

    return register


def run_hmp(mon: Monitor, line: str, *, console: bool = False) -> str:
    """Run one HMP command line; returns its output (errors included, as QEMU prints them).

    On an interactive ``console``, ``migrate`` without -d raises WaitForMigration
    so the console holds its prompt; elsewhere (human-monitor-command) it detaches.
    """
    line = line.strip()
    if not line:
        return ""
    name, _, rest = line.partition(" ")
    name = ALIASES.get(name, name)
    if name in ("x", "xp") or name.startswith(("x/", "xp/")):
        return _memory_dump(mon, line)
    entry = HMP_COMMANDS.get(name)
    if entry is None:
        return f"unknown command: '{name}'\n"
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        return f"{name}: {exc}\n"
    try:
        return entry[0](mon, words)
    except WaitForMigration:
        if console:
            raise
        return ""
    except HMPError as exc:
        return f"{exc}\n"
    except ArcternError as exc:
        return f"Error: {exc}\n"


def _qmp(mon: Monitor, name: str, args: dict | None = None) -> Any:
    return mon.execute(name, args or {})


def _plain_qmp_command(name: str, usage: str) -> None:
    """Register HMP command ``name``: no arguments, runs the QMP command of the same name."""

    def run(mon: Monitor, words: list[str]) -> str:
        if words:
            raise HMPError(f"usage: {name}")
        _qmp(mon, name)
        return ""

    hmp_command(name, usage)(run)


# --- run state ---------------------------------------------------------------------

_plain_qmp_command("stop", "stop -- stop emulation")
_plain_qmp_command("cont", "cont|c -- resume emulation")


@hmp_command("quit", "quit|q -- quit the emulator")
def _quit(mon: Monitor, words: list[str]) -> str:
    mon.quit("host-qmp-quit")
    return ""


@hmp_command("system_reset", "system_reset -- reset the system")
def _system_reset(mon: Monitor, words: list[str]) -> str:
    _qmp(mon, "system_reset")
    return ""


@hmp_command("system_powerdown", "system_powerdown -- send system power down event")
def _system_powerdown(mon: Monitor, words: list[str]) -> str:
    _qmp(mon, "system_powerdown")
    return ""


# --- info -------------------------------------------------------------------------------


def _info_status(mon: Monitor) -> str:
    status = _qmp(mon, "query-status")
    state = status["status"]
    if status["running"]:
        return "VM status: running\n"
    return "VM status: paused\n" if state == "paused" else f"VM status: paused ({state})\n"


def _info_block(mon: Monitor) -> str:
    lines = []
    for drive in _qmp(mon, "query-block"):
        inserted = drive["inserted"]
        ro = ", read-only" if inserted["ro"] else ""
        lines.append(f"{drive['device']}: {inserted['file']} ({inserted['drv']}{ro})")
        if not inserted["active"]:
            lines.append("    Image is inactive (migration hand-over)")
    return "".join(f"{line}\n" for line in lines)


def _kbytes(n: int) -> str:
    return f"{n >> 10} kbytes"


def _info_migrate(mon: Monitor) -> str:
    info = _qmp(mon, "query-migrate")
    if not info:
        return ""
    out = []
    out.append(f"Migration status: {info['status']}")
    if "total-time" in info:
        out.append(f"total time: {info['total-time']} ms")
    if "expected-downtime" in info:
        out.append(f"expected downtime: {info['expected-downtime']} ms")
    if "downtime" in info:
        out.append(f"downtime: {info['downtime']} ms")
    if "setup-time" in info:
        out.append(f"setup: {info['setup-time']} ms")
    ram = info.get("ram")
    if ram and "duplicate" in ram:
        out += [
            f"transferred ram: {_kbytes(ram['transferred'])}",
            f"throughput: {ram['mbps']:.2f} mbps",
            f"remaining ram: {_kbytes(ram['remaining'])}",
            f"total ram: {_kbytes(ram['total'])}",
            f"duplicate: {ram['duplicate']} pages",
            f"skipped: {ram['skipped']} pages",
            f"normal: {ram['normal']} pages",
            f"normal bytes: {_kbytes(ram['normal-bytes'])}",
            f"dirty sync count: {ram['dirty-sync-count']}",
            f"page size: {ram['page-size'] >> 10} kbytes",
        ]
        if ram["dirty-pages-rate"]:
            out.append(f"dirty pages rate: {ram['dirty-pages-rate']} pages")
    elif ram:
        out.append(f"transferred ram: {_kbytes(ram['transferred'])}")
        out.append(f"total ram: {_kbytes(ram['total'])}")
    if "error-desc" in info:
        out.append(f"Migration error: {info['error-desc']}")
    return "\n".join(out) + "\n"


def _info_migrate_parameters(mon: Monitor) -> str:
    params = _qmp(mon, "query-migrate-parameters")
    return (
        f"max-bandwidth: {params['max-bandwidth']} bytes/second\n"
        f"downtime-limit: {params['downtime-limit']} ms\n"
    )


def _info_migrate_capabilities(mon: Monitor) -> str:
    caps = _qmp(mon, "query-migrate-capabilities")
    return "".join(f"{c['capability']}: {_onoff(c['state'])}\n" for c in caps)


def _info_version(mon: Monitor) -> str:
    version = _qmp(mon, "query-version")["qemu"]
    return f"{version['major']}.{version['minor']}.{version['micro']} (Arctern)\n"


def _info_cpus(mon: Monitor) -> str:
    lines = []
    for cpu in _qmp(mon, "query-cpus-fast"):
        mark = "*" if cpu["cpu-index"] == 0 else " "
        lines.append(f"{mark} CPU #{cpu['cpu-index']}: thread_id={cpu['thread-id']}\n")
    return "".join(lines)


def _info_uuid(mon: Monitor) -> str:
    return f"{_qmp(mon, 'query-uuid')['UUID']}\n"


def _info_kvm(mon: Monitor) -> str:
    kvm = _qmp(mon, "query-kvm")
    if not kvm["present"]:
        return "kvm support: not compiled\n"
    return f"kvm support: {'enabled' if kvm['enabled'] else 'disabled'}\n"


def _info_chardev(mon: Monitor) -> str:
    return "".join(f"{c['label']}: filename={c['filename']}\n" for c in _qmp(mon, "query-chardev"))


INFO = {
    "status": _info_status,
    "block": _info_block,
    "migrate": _info_migrate,
    "migrate_parameters": _info_migrate_parameters,
    "migrate_capabilities": _info_migrate_capabilities,
    "version": _info_version,
    "cpus": _info_cpus,
    "uuid": _info_uuid,
    "kvm": _info_kvm,
    "chardev": _info_chardev,
}


def _onoff(state: bool) -> str:
    return "on" if state else "off"


@hmp_command("info", "info [subcommand] -- show various information about the system state")
def _info(mon: Monitor, words: list[str]) -> str:
    if not words:
        return "".join(f"info {name}\n" for name in INFO)
    if words[0] not in INFO:
        return f"unknown command: 'info {words[0]}'\n"
    return INFO[words[0]](mon)


# --- migration ---------------------------------------------------------------------


@hmp_command("migrate", "migrate [-d] uri -- migrate to URI (-d: do not wait for completion)")
def _migrate(mon: Monitor, words: list[str]) -> str:
    detach = "-d" in words
    uris = [w for w in words if w != "-d"]
    if len(uris) != 1:
        raise HMPError("usage: migrate [-d] uri")
    _qmp(mon, "migrate", {"uri": uris[0]})
    if not detach:
        raise WaitForMigration()
    return ""


class WaitForMigration(Exception):
    """``migrate`` without -d: the console holds its prompt until the migration ends."""


_plain_qmp_command("migrate_cancel", "migrate_cancel -- cancel the current VM migration")


@hmp_command("migrate_incoming", "migrate_incoming uri -- continue an incoming migration")
def _migrate_incoming(mon: Monitor, words: list[str]) -> str:
    if len(words) != 1:
        raise HMPError("usage: migrate_incoming uri")
    _qmp(mon, "migrate-incoming", {"uri": words[0]})
    return ""


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([bkmgtpeBKMGTPE]?)$")


def size_mib(text: str) -> int | None:
    """QEMU's qemu_strtosz_MiB: a size whose default unit is MiB; None if ``text`` is not one."""
    match = _SIZE.match(text)
    if not match:
        return None
    number, unit = match.groups()
    shift = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}[(unit or "m").lower()]
    return int(float(number) * (1 << shift))


@hmp_command("migrate_set_parameter", "migrate_set_parameter parameter value")
def _migrate_set_parameter(mon: Monitor, words: list[str]) -> str:
    if len(words) != 2:
        raise HMPError("usage: migrate_set_parameter parameter value")
    name, text = words
    if name == "max-bandwidth":
        value = size_mib(text)
        if value is None:
            raise HMPError(f"Error: Parameter 'max-bandwidth' expects a size, not '{text}'")
    elif name == "downtime-limit":
        if not text.isdigit():
            raise HMPError(f"Error: Parameter 'downtime-limit' expects an integer, not '{text}'")
        value = int(text)
    else:
        raise HMPError(f"Error: Parameter '{name}' is unexpected")
    _qmp(mon, "migrate-set-parameters", {name: value})
    return ""


@hmp_command("migrate_set_capability", "migrate_set_capability capability on|off")
def _migrate_set_capability(mon: Monitor, words: list[str]) -> str:
    if len(words) != 2 or words[1] not in ("on", "off"):
        raise HMPError("usage: migrate_set_capability capability on|off")
    caps = [{"capability": words[0], "state": words[1] == "on"}]
    _qmp(mon, "migrate-set-capabilities", {"capabilities": caps})
    return ""


@hmp_command("help", "help|? [cmd] -- show the help")
def _help(mon: Monitor, words: list[str]) -> str:
    usages = [usage for _f, usage in HMP_COMMANDS.values()]
    usages += [
        "x /fmt addr -- virtual memory dump starting at 'addr'",
        "xp /fmt addr -- physical memory dump starting at 'addr'",
    ]
    return "".join(f"{u}\n" for u in sorted(usages))


HMP_COMMANDS["?"] = HMP_COMMANDS["help"]


# --- memory dumps -------------------------------------------------------------------

_FORMAT = re.compile(r"^/(\d*)([xduoci]?)([bhwg]?)$")
_WSIZE = {"b": 1, "h": 2, "w": 4, "g": 8}


class DumpFormat:
    """QEMU remembers the last format and unit: ``x /4xb`` then ``x /4c`` prints 4 bytes."""

    def __init__(self) -> None:
        self.format = "x"
        self.size = 4


def _memory_dump(mon: Monitor, line: str) -> str:
    """``x /Nfu addr`` and ``xp /Nfu addr``: QEMU's memory_dump layout."""
    head, _, rest = line.partition(" ")
    name, slash, fmt_inline = head.partition("/")
    words = rest.split()
    fmt_text = f"/{fmt_inline}" if slash else ""
    if not fmt_text and words and words[0].startswith("/"):
        fmt_text = words.pop(0)
    match = _FORMAT.match(fmt_text or "/")
    if match is None or len(words) != 1:
        return f"usage: {name} /fmt addr (fmt: count, format x d u o c, unit b h w g)\n"
    count_text, fmt, unit = match.groups()
    try:
        addr = int(words[0], 0)
    except ValueError:
        return f"invalid address '{words[0]}'\n"
    last = mon.dump_format
    fmt = fmt or last.format
    if fmt == "i":
        return "format 'i' (disassembly) is not supported\n"
    count = int(count_text or 1)
    if count > 1 << 16:
        return "count too large (at most 65536)\n"
    # As in QEMU, the length and line size come from the unit (the last one used
    # when not given) even for format c, which then prints bytes one by one.
    wsize = _WSIZE[unit] if unit else last.size
    last.format, last.size = fmt, wsize
    line_size = 8 if wsize == 1 else 16
    physical = name == "xp"
    return "".join(
        _dump_lines(mon, addr, count * wsize, 1 if fmt == "c" else wsize, line_size, fmt, physical)
    )


def _read(mon: Monitor, addr: int, size: int, physical: bool) -> int:
    machine = mon.machine
    if not physical:
        translate = getattr(machine.cpus[0], "virt_to_phys", None) if machine.cpus else None
        if translate is not None:
            addr = translate(addr)
    ram = machine.ram
    if ram.base <= addr and addr + size <= ram.end:
        off = addr - ram.base
        return int.from_bytes(ram.data[off : off + size], "little")
    return machine.address_space.read(addr, size)


def _dump_lines(mon, addr, length: int, wsize: int, line_size: int, fmt: str, physical: bool):
    digits = {"o": -(-wsize * 8 // 3), "x": wsize * 2, "u": -(-wsize * 80 // 33)}
    digits["d"] = digits["u"]
    while length > 0:
        n = min(length, line_size)
        parts = [f"{addr:016x}:" if physical else f"{addr & 0xFFFFFFFF:08x}:"]
        for i in range(0, n, wsize):
            value = _read(mon, addr + i, wsize, physical)
            if fmt == "x":
                parts.append(f" 0x{value:0{digits['x']}x}")
            elif fmt == "o":
                parts.append(" " + (f"0{value:o}" if value else "0").rjust(digits["o"]))
            elif fmt == "u":
                parts.append(f" {value:{digits['u']}d}")
            elif fmt == "d":  # QEMU prints the value as a 64-bit signed number
                signed = value - (1 << 64) if wsize == 8 and value >> 63 else value
                parts.append(f" {signed:{digits['d']}d}")
            else:
                parts.append(" " + _printc(value))
        yield "".join(parts) + "\n"
        addr += n
        length -= n


def _printc(value: int) -> str:
    escapes = {0x5C: "\\\\", 0x27: "\\'", 0x0A: "\\n", 0x0D: "\\r"}
    if value in escapes:
        return f"'{escapes[value]}'"
    if 32 <= value < 127:
        return f"'{chr(value)}'"
    return f"'\\x{value:02x}'"


# --- for the interactive consoles ------------------------------------------------------


def completions(line: str) -> tuple[list[str], int]:
    """Tab on ``line`` (the text left of the cursor): the candidates, and the length of the
    word they complete. As QEMU: command names (aliases included), then ``info`` topics."""
    words = line.split()
    if not line or line[-1].isspace():
        words.append("")
    if len(words) == 1:
        names = [*HMP_COMMANDS, *ALIASES, "x", "xp"]
    elif len(words) == 2 and ALIASES.get(words[0], words[0]) == "info":
        names = list(INFO)
    else:
        return [], 0
    word = words[-1]
    return [name for name in names if name.startswith(word)], len(word)


def run_console_line(monitor: Monitor, line: str) -> str | None:
    """Run a line typed at an interactive console; None while ``migrate`` holds the prompt."""
    try:
        return run_hmp(monitor, line, console=True)
    except WaitForMigration:
        return None
    except Exception as exc:  # a bug in one command must not take the guest down
        log.error("HMP command %r failed", line, exc_info=True)
        return f"Error: {type(exc).__name__}: {exc}\n"


def migration_wait_result(monitor: Monitor) -> str | None:
    """None while the migration a console waits for runs; then what to print ("" or its error)."""
    outgoing = monitor.migration.outgoing
    if outgoing is not None and not outgoing.finished:
        return None
    return f"Error: {outgoing.error}\n" if outgoing is not None and outgoing.error else ""
