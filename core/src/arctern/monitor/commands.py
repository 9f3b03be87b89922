"""QMP commands: QEMU's names, arguments, replies and error texts.

Each command is a function ``(monitor, args) -> return value`` registered
with :func:`command`, which also declares its arguments so that a bad call
gets QEMU's error text ("Parameter 'uri' is missing", ...) before the
function runs. HMP reuses these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arctern import __version__
from arctern.errors import ArcternError

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor


class QMPError(ArcternError):
    """An error reply; ``error_class`` is QEMU's (GenericError, CommandNotFound, ...)."""

    error_class = "GenericError"


class CommandNotFound(QMPError):
    error_class = "CommandNotFound"


@dataclass(frozen=True)
class Command:
    name: str
    func: Callable[[Monitor, dict[str, Any]], Any]
    args: dict[str, tuple[type | tuple[type, ...], bool]]  # name -> (type, required)
    any_args: bool = False  # migrate-set-parameters: the arguments are the parameters

    def check(self, args: dict[str, Any]) -> None:
        if self.any_args:
            return
        for key in args:
            if key not in self.args:
                raise QMPError(f"Parameter '{key}' is unexpected")
        for key, (kind, needed) in self.args.items():
            if key not in args:
                if needed:
                    raise QMPError(f"Parameter '{key}' is missing")
                continue
            value = args[key]
            if not isinstance(value, kind) or (
                kind is int and (isinstance(value, bool) or not _INT64_MIN <= value <= _INT64_MAX)
            ):  # QEMU's JSON parser makes a number past int64 a double: not an integer
                raise QMPError(f"Invalid parameter type for '{key}', expected: {_type_name(kind)}")


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", bool: "boolean", list: "array", dict: "object"}
    return names.get(kind, "value") if isinstance(kind, type) else "value"


COMMANDS: dict[str, Command] = {}


def command(name: str, /, *, any_args: bool = False, **args: tuple[type, bool]):
    def register(func: Callable[[Monitor, dict[str, Any]], Any]):
        COMMANDS[name] = Command(name, func, args, any_args)
        return func

    return register


# --- the monitor itself ----------------------------------------------------------


@command("query-version")
def query_version(mon: Monitor, args: dict) -> dict:
    major, minor, micro = (int(p) for p in (__version__.split(".") + ["0", "0"])[:3])
    return {
        "qemu": {"major": major, "minor": minor, "micro": micro},
        "package": f"Arctern {__version__}",
    }


@command("query-commands")
def query_commands(mon: Monitor, args: dict) -> list:
    return [{"name": name} for name in sorted(COMMANDS)]


@command("query-name")
def query_name(mon: Monitor, args: dict) -> dict:
    return {"name": mon.name} if mon.name else {}


@command("human-monitor-command", **{"command-line": (str, True), "cpu-index": (int, False)})
def human_monitor_command(mon: Monitor, args: dict) -> str:
    return mon.hmp(args["command-line"])


# --- run state ----------------------------------------------------------------------


@command("query-status")
def query_status(mon: Monitor, args: dict) -> dict:
    state = mon.machine.runstate
    return {"status": state, "singlestep": False, "running": state == "running"}


@command("stop")
def stop(mon: Monitor, args: dict) -> None:
    machine = mon.machine
    if machine.runstate == "inmigrate":  # as -S: stay paused once the state is loaded
        mon.autostart = False
        if mon.migration.incoming is not None:
            mon.migration.incoming.autostart = False
    elif machine.runstate == "running":
        machine.pause("paused")


@command("cont")
def cont(mon: Monitor, args: dict) -> None:
    machine = mon.machine
    if machine.runstate == "shutdown":
        raise QMPError("Resetting the Virtual Machine is required")
    mon.io_status.clear()  # as QEMU: cont resets every drive's I/O status first
    if machine.runstate == "running":
        return
    if machine.runstate == "inmigrate" or mon.migration.deferred_incoming:
        mon.autostart = True
        if mon.migration.incoming is not None:
            mon.migration.incoming.autostart = True
        return
    mon.migration.prepare_cont()
    machine.resume()


@command("system_reset")
def system_reset(mon: Monitor, args: dict) -> None:
    mon.pending_reset = True
    mon.machine.reset()
    if mon.pending_reset:  # the machine did not report the reset through the hook
        mon.pending_reset = False
        mon.emit("RESET", {"guest": False, "reason": "host-qmp-system-reset"})


@command("system_powerdown")
def system_powerdown(mon: Monitor, args: dict) -> None:
    # As QEMU: the event, then the button press; a board without a power button
    # (or a guest that ignores it) simply does nothing more.
    mon.emit("POWERDOWN", {})
    powerdown = getattr(mon.machine, "powerdown", None)
    if powerdown is not None:
        powerdown()


@command("quit")
def quit_(mon: Monitor, args: dict) -> None:
    mon.quit("host-qmp-quit")


# --- devices ----------------------------------------------------------------------


STAT_KEYS = (
    "rd_bytes",
    "wr_bytes",
    "rd_operations",
    "wr_operations",
    "flush_operations",
    "rd_total_time_ns",
    "wr_total_time_ns",
)


@command("query-blockstats")
def query_blockstats(mon: Monitor, args: dict) -> list:
    result = []
    for name, backend in sorted(getattr(mon.machine, "drives", {}).items()):
        counters = getattr(backend, "stats", None) or {}
        stats = {key: int(counters.get(key, 0)) for key in STAT_KEYS}
        result.append({"device": name, "stats": stats})
    return result


@command("query-cpus-fast")
def query_cpus_fast(mon: Monitor, args: dict) -> list:
    cpus = []
    for index, cpu in enumerate(mon.machine.cpus):
        cpus.append(
            {
                "cpu-index": index,
                "qom-path": f"/machine/unattached/device[{index}]",
                "thread-id": os.getpid(),
                "props": {"core-id": 0, "thread-id": 0, "socket-id": index},
                "target": getattr(cpu, "arch", "") or getattr(mon.machine, "arch", ""),
            }
        )
    return cpus


# --- migration --------------------------------------------------------------------


@command(
    "migrate",
    uri=(str, True),
    detach=(bool, False),
    blk=(bool, False),
    inc=(bool, False),
    resume=(bool, False),
)
def migrate(mon: Monitor, args: dict) -> None:
    if args.get("blk") or args.get("inc"):
        raise QMPError("block migration is not supported; use shared storage")
    if args.get("resume"):
        raise QMPError("postcopy resume is not supported")
    mon.migration.migrate(args["uri"])


@command("migrate_cancel")
def migrate_cancel(mon: Monitor, args: dict) -> None:
    mon.migration.cancel()


@command("query-migrate")
def query_migrate(mon: Monitor, args: dict) -> dict:
    return mon.migration.query()


@command("migrate-set-parameters", any_args=True)
def migrate_set_parameters(mon: Monitor, args: dict) -> None:
    mon.migration.set_parameters(args)


@command("query-migrate-parameters")
def query_migrate_parameters(mon: Monitor, args: dict) -> dict:
    return dict(mon.migration.parameters)


@command("migrate-set-capabilities", capabilities=(list, True))
def migrate_set_capabilities(mon: Monitor, args: dict) -> None:
    mon.migration.set_capabilities(args["capabilities"])


@command("query-migrate-capabilities")
def query_migrate_capabilities(mon: Monitor, args: dict) -> list:
    return mon.migration.capability_list()


@command("migrate-incoming", uri=(str, True))
def migrate_incoming(mon: Monitor, args: dict) -> None:
    migration = mon.migration
    if not migration.deferred_incoming:
        if migration.incoming is not None:
            raise QMPError("The incoming migration has already been started")
        raise QMPError("'-incoming' was not specified on the command line")
    migration.start_incoming(args["uri"], autostart=mon.autostart)


@command("qmp_capabilities", enable=(list, False))
def qmp_capabilities(mon: Monitor, args: dict) -> None:
    # Reached only after negotiation: the server answers the first one itself.
    raise CommandNotFound("Capabilities negotiation is already complete, command ignored")
