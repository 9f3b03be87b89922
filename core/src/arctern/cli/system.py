"""arctern-system: run a machine with qemu-system's options, messages and exit statuses.

A guest that runs under ``qemu-system-i386 -M microvm ...`` runs unchanged
under ``arctern-system -M microvm ...`` with the same options. The process
exits with the guest's status: 0 after a power-off, ``(v << 1) | 1`` after
``isa-debug-exit`` receives v, 1 after an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from arctern.errors import ArcternError, MachineError, UsageError
from arctern.machine.launch import MachineConfig, launch
from arctern.machine.machine import Machine
from arctern.machine.mux import MuxChardev
from arctern.monitor.options import attach_monitor, machine_uuid
from arctern.plugins import Registry, default_registry

from .common import run_cli
from .debug_log import setup_debug_log
from .system_help import help_text
from .system_options import (
    PROG,
    build_parser,
    config_from_args,
    escape_char,
    guest_name,
    monitors,
)

log = logging.getLogger(__name__)


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
    uuid = machine_uuid(args)
    escape = escape_char(args)
    setup_debug_log(args.log_items, args.log_file)
    with _pidfile(args.pidfile):
        return _start(args, config, registry, escape, uuid)


@contextlib.contextmanager
def _pidfile(path: str | None) -> Iterator[None]:
    """-pidfile: the process id while the machine exists, removed at exit as QEMU does."""
    if path is None:
        yield
        return
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise UsageError(
            f"cannot create PID file: Could not create '{path}': {exc.strerror}"
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _start(
    args: argparse.Namespace,
    config: MachineConfig,
    registry: Registry,
    escape: int | None,
    uuid: str,
) -> int:
    """Build the machine, attach the monitor and run until the guest is done."""
    logging.getLogger("arctern.machine.chardev").setLevel(logging.INFO)  # "waiting for ..."
    machine = launch(config, registry=registry)
    monitor = None
    try:
        if escape is not None:  # -echr
            for chardev in machine.chardevs.values():
                if isinstance(chardev, MuxChardev):
                    chardev.escape = escape
        monitor = attach_monitor(
            machine,
            qmp=args.qmp,
            monitor=monitors(args),
            mon=args.mon,
            incoming=args.incoming,
            autostart=not args.stopped,
            name=guest_name(args),
            uuid=uuid,
            order=args.monitor_order,
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
