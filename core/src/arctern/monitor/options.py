"""What arctern-system needs from the monitor and migration: options and one attach call.

``arctern-system`` adds these options to its parser with
:func:`add_monitor_options` and, once the machine is built, calls
:func:`attach_monitor`; everything else (QMP servers, the HMP console,
``-incoming``) is set up here::

    -qmp unix:PATH,server=on,wait=off    (repeatable; also tcp:HOST:PORT,...)
    -monitor stdio                       (HMP on the terminal; "none" for nothing;
                                          or a socket as -qmp takes it)
    -incoming URI | defer                (wait for a migration instead of booting)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from arctern.errors import ArcternError, UsageError
from arctern.machine.chardev import StdioChardev
from arctern.migration.manager import MigrationManager
from arctern.monitor.monitor import Monitor


def add_monitor_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-qmp", action="append", default=[], metavar="DEV", help="QMP server socket (repeatable)"
    )
    parser.add_argument(
        "-monitor",
        action="append",
        default=[],
        metavar="DEV",
        help="HMP monitor: stdio, none, unix:PATH,server=on,wait=off or tcp:HOST:PORT,...",
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
) -> Monitor:
    """Create the machine's migration manager and monitor, its QMP servers and HMP console.

    With ``incoming`` the machine must have been built with its images
    inactive and must stay in run state ``inmigrate``: the migration resumes
    it (unless ``autostart`` is False, i.e. ``-S``). A failed incoming
    migration makes the process exit with status 1, as QEMU does.
    """
    migration = MigrationManager(machine, exit_on_incoming_failure=True)
    mon = Monitor(machine, migration, name=name, autostart=autostart)
    try:
        for spec in qmp:
            mon.add_qmp(spec)
        for spec in monitor:
            if spec == "stdio":
                if any(isinstance(c, StdioChardev) for c in machine.chardevs.values()):
                    raise UsageError(
                        "-monitor stdio: cannot use stdio by multiple character devices"
                    )
                mon.add_hmp(sys.stdin, sys.stdout)
            elif spec != "none":
                mon.add_hmp_server(spec)
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
