"""What arctern-system needs from the monitor and migration: options and one attach call.

``arctern-system`` adds these options to its parser with
:func:`add_monitor_options` and, once the machine is built, calls
:func:`attach_monitor`; everything else (QMP servers, the HMP console,
``-incoming``) is set up here::

    -qmp unix:PATH,server=on,wait=off    (repeatable; also tcp:HOST:PORT,...)
    -monitor stdio                       (HMP with QEMU's line editor on the terminal;
                                          "none" for nothing;
                                          chardev:ID; or a socket as -qmp takes it)
    -mon [chardev=]ID[,mode=readline]    (HMP with QEMU's line editor on -chardev ID;
                                          with mux=on it shares the terminal: C-a c)
    -incoming URI | defer                (wait for a migration instead of booting)

``-serial mon:SPEC`` (and ``-nographic``'s default ``mon:stdio``) gets its HMP
monitor here too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from arctern.errors import ArcternError, UsageError
from arctern.machine.chardev import StdioChardev
from arctern.machine.mux import MuxChardev
from arctern.migration.manager import MigrationManager
from arctern.monitor.machine_queries import NULL_UUID, parse_uuid
from arctern.monitor.monitor import Monitor
from arctern.qemu_opts import parse_opts


class _AppendInOrder(argparse._AppendAction):
    """Append, and note in ``monitor_order`` which of -qmp/-monitor came when."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        super().__call__(parser, namespace, values, option)
        order = [*(getattr(namespace, "monitor_order", None) or []), self.dest]
        namespace.monitor_order = order


def add_monitor_options(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(monitor_order=[])
    parser.add_argument(
        "-qmp",
        action=_AppendInOrder,
        default=[],
        metavar="DEV",
        help="QMP server socket (repeatable)",
    )
    parser.add_argument(
        "-monitor",
        action=_AppendInOrder,
        default=[],
        metavar="DEV",
        help="HMP monitor: stdio, none, chardev:ID, unix:PATH,server=on,wait=off or "
        "tcp:HOST:PORT,...",
    )
    parser.add_argument(
        "-mon",
        action="append",
        default=[],
        metavar="[chardev=]ID[,mode=readline]",
        help="HMP monitor on the character device ID (repeatable)",
    )
    parser.add_argument(
        "-incoming", metavar="URI", help="wait for an incoming migration on URI (or 'defer')"
    )


def attach_monitor(
    machine: Any,
    *,
    qmp: list[str],
    monitor: list[str],
    incoming: str | None,
    autostart: bool,
    name: str | None = None,
    mon: list[str] | None = None,
    uuid: str = NULL_UUID,
    order: Sequence[str] = (),
) -> Monitor:
    """Create the machine's migration manager and monitor, its QMP servers and HMP console.

    With ``incoming`` the machine must have been built with its images
    inactive and must stay in run state ``inmigrate``: the migration resumes
    it (unless ``autostart`` is False, i.e. ``-S``). A failed incoming
    migration makes the process exit with status 1, as QEMU does. ``order``
    says which of ``qmp`` and ``monitor`` came first on the command line
    ("qmp"/"monitor" each), for their chardev names.
    """
    mon_options = mon or []
    labels = compat_labels(order, qmp, monitor)
    migration = MigrationManager(machine, exit_on_incoming_failure=True)
    mon = Monitor(machine, migration, name=name, uuid=uuid, autostart=autostart)
    try:
        for spec, label in zip(qmp, labels["qmp"], strict=True):
            mon.add_qmp(spec, label)
        for id, chardev in machine.chardevs.items():
            if isinstance(chardev, MuxChardev):
                # C-a x is QMP's quit: QMP clients see SHUTDOWN "host-qmp-quit", as in QEMU
                chardev.set_quit_handler(lambda: mon.quit("host-qmp-quit"))
                if chardev.wants_monitor:
                    mon.add_hmp_chardev(chardev, id)
        for spec, label in zip(monitor, labels["monitor"], strict=True):
            if spec == "stdio":
                if any(_uses_stdio(c) for c in machine.chardevs.values()):
                    raise UsageError(
                        "-monitor stdio: cannot use stdio by multiple character devices"
                    )
                terminal = StdioChardev()  # as QEMU: a chardev of its own, read by the machine
                machine.add_chardev(label, terminal)
                mon.add_hmp_chardev(terminal, label)
            elif spec.startswith("chardev:"):
                _monitor_on_chardev(mon, machine, spec.removeprefix("chardev:"), f"-monitor {spec}")
            elif spec != "none":
                mon.add_hmp_server(spec, label)
        for text in mon_options:
            _monitor_on_chardev(mon, machine, _mon_chardev(text), f"-mon {text}")
        if incoming == "defer":
            migration.defer_incoming()
        elif incoming:
            try:
                migration.start_incoming(incoming, autostart=autostart)
            except ArcternError as exc:  # QEMU names the option, as for -qmp
                raise UsageError(f"-incoming {incoming}: {exc}") from None
    except BaseException:
        mon.close()
        raise
    return mon


def compat_labels(
    order: Sequence[str], qmp: Sequence[str], monitor: Sequence[str]
) -> dict[str, list[str]]:
    """QEMU's chardev name of each -qmp and -monitor: ``compat_monitorN``, numbered in
    command-line order (``-monitor none`` takes no number). Options missing from
    ``order`` (defaults added later) come after the others."""
    kinds = [*order]
    kinds += ["qmp"] * (len(qmp) - kinds.count("qmp"))
    kinds += ["monitor"] * (len(monitor) - kinds.count("monitor"))
    specs = {"qmp": iter(qmp), "monitor": iter(monitor)}
    labels: dict[str, list[str]] = {"qmp": [], "monitor": []}
    number = 0
    for kind in kinds:
        if next(specs[kind]) == "none":
            labels[kind].append("")
            continue
        labels[kind].append(f"compat_monitor{number}")
        number += 1
    return labels


def _uses_stdio(chardev: Any) -> bool:
    return isinstance(chardev, StdioChardev) or (
        isinstance(chardev, MuxChardev) and isinstance(chardev.backend, StdioChardev)
    )


def _mon_chardev(text: str) -> str:
    """The chardev id of ``-mon [chardev=]ID[,mode=readline][,pretty=on|off]``."""
    options = parse_opts(text, "chardev")
    for key in options:
        if key not in ("chardev", "mode", "pretty"):
            raise UsageError(f"-mon {text}: Invalid parameter '{key}'")
    if not options.get("chardev"):
        raise UsageError(f"-mon {text}: Parameter 'chardev' is missing")
    mode = options.get("mode", "readline")
    if mode == "control":
        raise UsageError(f"-mon {text}: QMP on a chardev is not supported; use -qmp unix:PATH,...")
    if mode != "readline":
        raise UsageError(f"-mon {text}: Parameter 'mode' does not accept value '{mode}'")
    if options.get("pretty", "off") not in ("on", "off"):
        raise UsageError(f"-mon {text}: Parameter 'pretty' expects 'on' or 'off'")
    return options["chardev"]


def _monitor_on_chardev(mon: Monitor, machine: Any, id: str, origin: str) -> None:
    chardev = machine.chardevs.get(id)
    if chardev is None:
        raise UsageError(f'{origin}: chardev "{id}" not found')
    try:
        mon.add_hmp_chardev(chardev, id)
    except ArcternError as exc:
        raise UsageError(f"{origin}: {exc}") from None


def machine_uuid(args: argparse.Namespace) -> str:
    """``-uuid UUID`` checked and in QEMU's lower-case spelling; all zeros without it."""
    return NULL_UUID if args.uuid is None else parse_uuid(args.uuid)
