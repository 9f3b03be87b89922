"""The monitor of one machine: runs commands, broadcasts events, serves QMP and HMP.

``arctern-system`` creates one :class:`Monitor` per machine, adds a QMP
server per ``-qmp`` option and an HMP console per ``-monitor`` (stdio or a
socket) and per monitor on a chardev (``mon:stdio``, ``-mon chardev=ID``); the
monitor polls them from the machine's main loop, so every command runs on
the main thread between CPU slices, like QEMU's under its big lock.

Events reach every negotiated QMP client with QEMU's timestamp. STOP,
RESUME, SHUTDOWN and RESET come from the ``arctern_guest_state_changed``
hook, BLOCK_IO_ERROR from ``arctern_block_io_error``, MIGRATION and
MIGRATION_PASS from the migration manager.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from arctern.errors import ArcternError
from arctern.hookspecs import hookimpl
from arctern.migration.manager import MigrationManager
from arctern.monitor import (  # noqa: F401  (they register their commands)
    block_commands,
    block_nodes,
    chardev_queries,
    hmp_block,
)
from arctern.monitor.commands import COMMANDS, CommandNotFound, QMPError
from arctern.monitor.hmp import DumpFormat, run_hmp
from arctern.monitor.hmp_server import HMPServer
from arctern.monitor.hmp_terminal import HMPTerminal
from arctern.monitor.machine_queries import NULL_UUID  # also registers its commands
from arctern.monitor.server import QMPServer

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


def event_message(event: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    now = time.time()
    message: dict[str, Any] = {
        "event": event,
        "timestamp": {"seconds": int(now), "microseconds": int(now * 1e6) % 1000000},
    }
    if data:
        message["data"] = data
    return message


class _MachineObserver:
    """A pluggy plugin turning run-state changes and I/O errors of our machine into events."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    @hookimpl
    def arctern_guest_state_changed(self, machine: Any, running: bool, reason: str) -> None:
        monitor = self.monitor
        if machine is not monitor.machine:
            return
        if reason == "reset":
            host = monitor.pending_reset
            monitor.pending_reset = False
            monitor.emit(
                "RESET",
                {"guest": not host, "reason": "host-qmp-system-reset" if host else "guest-reset"},
            )
        elif reason == "shutdown":
            if not monitor.quitting:
                monitor.emit("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"})
        elif running:
            monitor.emit("RESUME")
        else:
            monitor.emit("STOP")

    @hookimpl
    def arctern_block_io_error(
        self,
        machine: Any,
        device: str,
        node_name: str | None,
        operation: str,
        action: str,
        nospace: bool | None,
        reason: str,
    ) -> None:
        if machine is not self.monitor.machine:
            return
        data: dict[str, Any] = {"device": device}
        backend = getattr(machine, "drives", {}).get(device)
        if node_name is None and backend is not None:  # QEMU names the drive's root node
            node_name = self.monitor.node_names.of(backend.node)
        if node_name is not None:
            data["node-name"] = node_name
        data.update(operation=operation, action=action)
        if nospace is not None:
            data["nospace"] = nospace
        data["reason"] = reason
        if action == "stop":  # query-block's io-status, until cont (QEMU keeps the first)
            self.monitor.io_status.setdefault(device, "nospace" if nospace else "failed")
        self.monitor.emit("BLOCK_IO_ERROR", data)


class Monitor:
    """Commands, events and the QMP/HMP front ends of one machine."""

    def __init__(
        self,
        machine: Any,
        migration: MigrationManager | None = None,
        *,
        registry: Any = None,
        name: str | None = None,
        uuid: str = NULL_UUID,
        autostart: bool = True,
    ) -> None:
        self.machine = machine
        self.registry = registry if registry is not None else machine.registry
        self.migration = migration or MigrationManager(machine, self.registry)
        self.name = name
        self.uuid = uuid  # -uuid (query-uuid, info uuid)
        self.autostart = autostart
        self.quitting = False
        self.pending_reset = False
        #: Drives stopped by an I/O error since the last cont: "failed" or "nospace".
        self.io_status: dict[str, str] = {}
        self.node_names = block_nodes.NodeNames()
        self.dump_format = DumpFormat()
        self.sinks: list[EventSink] = []
        self.front_ends: list[Any] = []
        self._compat_monitors = 0
        self.migration.listeners.append(self.emit)
        self._observer = _MachineObserver(self)
        self.registry.pm.register(self._observer, name=f"monitor-{id(self):x}")
        machine.add_poll_hook(self.poll, self.fds)

    # --- commands ---------------------------------------------------------------

    def execute(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """Run a QMP command; QMPError (with its QEMU error class) on failure."""
        self.check_command(name)
        cmd = COMMANDS[name]
        args = args or {}
        cmd.check(args)
        try:
            result = cmd.func(self, args)
        except QMPError:
            raise
        except ArcternError as exc:
            raise QMPError(str(exc)) from None
        except Exception as exc:  # a bug in one command must not take the guest down
            log.error("QMP command %s failed", name, exc_info=True)
            raise QMPError(f"{name} failed: {type(exc).__name__}: {exc}") from None
        return {} if result is None else result

    def check_command(self, name: str) -> None:
        """Raise CommandNotFound, in QEMU's words, unless ``name`` is a QMP command."""
        if name not in COMMANDS:
            raise CommandNotFound(f"The command {name} has not been found")

    def hmp(self, line: str) -> str:
        """An HMP command's output as QEMU returns it to human-monitor-command (CRLF lines)."""
        return run_hmp(self, line).replace("\n", "\r\n")

    # --- events ------------------------------------------------------------------

    def emit(self, event: str, data: dict[str, Any] | None = None) -> None:
        message = event_message(event, data)
        log.debug("event %s", message)
        for sink in list(self.sinks):
            sink(message)

    # --- front ends -------------------------------------------------------------

    def add_qmp(self, spec: str, label: str = "") -> Any:
        """Serve QMP on ``unix:PATH,server=on,wait=off`` or ``tcp:HOST:PORT,server=on,...``.

        ``label`` is its chardev name (query-chardev); by default the next compat_monitorN.
        """
        server = QMPServer(self, spec, label or self.next_compat_label())
        self.front_ends.append(server)
        return server

    def next_compat_label(self) -> str:
        """The chardev name QEMU gives the next -qmp/-monitor: compat_monitor0, 1, ..."""
        self._compat_monitors += 1
        return f"compat_monitor{self._compat_monitors - 1}"

    def add_hmp_chardev(self, chardev: Any, label: str = "") -> HMPTerminal:
        """HMP with QEMU's line editor on a chardev (``mon:stdio``, ``-mon chardev=ID``).

        On a multiplexer it shares the terminal with the serial port (C-a c).
        """
        terminal = HMPTerminal(self, chardev, label)
        self.front_ends.append(terminal)
        return terminal

    def add_hmp_server(self, spec: str, label: str = "") -> Any:
        """HMP on ``unix:PATH,server=on,wait=off`` or ``tcp:HOST:PORT,server=on,...``."""
        server = HMPServer(self, spec, label or self.next_compat_label())
        self.front_ends.append(server)
        return server

    def fds(self) -> list[int]:
        """What the idle main loop waits on for us: sockets and the HMP terminal."""
        return [fd for front_end in self.front_ends for fd in front_end.fds()]

    def poll(self) -> None:
        """Serve every front end without blocking (a main-loop poll hook)."""
        for front_end in list(self.front_ends):
            front_end.poll()

    def quit(self, reason: str) -> None:
        """``quit``: stop migrations, tell clients, let the main loop exit with status 0."""
        self.quitting = True
        self.migration.shutdown()
        self.emit("SHUTDOWN", {"guest": False, "reason": reason})
        self.machine.request_exit(0)

    def close(self) -> None:
        """Flush and close the front ends, stop migrations, leave the main loop."""
        for front_end in self.front_ends:
            front_end.close()
        self.front_ends.clear()
        self.migration.close()
        remove = getattr(self.machine, "remove_poll_hook", None)
        if remove is not None:
            remove(self.poll)
        self.registry.pm.unregister(self._observer)
