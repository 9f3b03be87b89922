"""One machine's migration state: parameters, capabilities, the current job, events.

The monitor's commands (migrate, migrate_cancel, query-migrate,
migrate-set-parameters, migrate-set-capabilities, migrate-incoming) and
``-incoming`` all go through a :class:`MigrationManager`. It advances the
current job from the machine's main loop (a poll hook) and reports status
changes to plugins (``arctern_migration_state_changed``) and, when the
``events`` capability is on, as QMP events (MIGRATION, MIGRATION_PASS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from arctern.errors import ArcternError, MigrationError, UsageError
from arctern.migration.handover import activate_images
from arctern.migration.incoming import IncomingMigration
from arctern.migration.outgoing import OutgoingMigration
from arctern.migration.transport import MigrationTransport, split_uri
from arctern.migration.wakeup import Wakeup

log = logging.getLogger(__name__)

DEFAULT_PARAMETERS = {"max-bandwidth": 134217728, "downtime-limit": 300}
PARAMETER_LIMITS = {"max-bandwidth": (0, 1 << 62), "downtime-limit": (0, 2000000)}
CAPABILITIES = ("events", "late-block-activate", "verify")
#: QEMU's reply to ``migrate`` on a source whose guest already went to a destination.
POSTMIGRATE_REFUSAL = "Can't migrate the vm that was paused due to previous migration"
#: Seconds a failed destination waits for its reader to tell the source why, before exiting.
EXIT_GRACE = 2.0

EventListener = Callable[[str, dict[str, Any]], None]


class MigrationManager:
    """Migration of one machine, in either direction."""

    def __init__(self, machine: Any, registry: Any = None, *, exit_on_incoming_failure=False):
        self.machine = machine
        self.registry = registry if registry is not None else machine.registry
        self.parameters = dict(DEFAULT_PARAMETERS)
        self.capabilities = dict.fromkeys(CAPABILITIES, False)
        self.outgoing: OutgoingMigration | None = None
        self.incoming: IncomingMigration | None = None
        self.deferred_incoming = False
        self.exit_on_incoming_failure = exit_on_incoming_failure
        self.listeners: list[EventListener] = []
        self.wakeup = Wakeup(interrupt=self._interrupt_slice)
        machine.add_poll_hook(self.poll, self.wakeup.fds)

    def _interrupt_slice(self) -> None:
        """From a worker thread: make the CPU end its slice so the poll hooks run soon."""
        self.machine.exit_request = True

    # --- events -------------------------------------------------------------

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(event, data)

    def _status_changed(self, status: str) -> None:
        self.registry.notify("arctern_migration_state_changed", machine=self.machine, status=status)
        if self.capabilities["events"]:
            self.emit("MIGRATION", {"status": status})

    # --- configuration -------------------------------------------------------

    def set_parameters(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in PARAMETER_LIMITS:
                raise UsageError(f"Parameter '{key}' is unexpected")
            low, high = PARAMETER_LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UsageError(f"Parameter '{key}' expects an integer between {low} and {high}")
        self.parameters.update(values)

    def set_capabilities(self, states: list[dict[str, Any]]) -> None:
        # As QEMU, only an outgoing migration in flight refuses: a destination may set its
        # capabilities (late-block-activate, events) while it waits or loads; they are
        # read when they matter.
        if self.outgoing is not None and not self.outgoing.finished:
            raise MigrationError("There's a migration process in progress")
        updates = {}
        for entry in states:
            name = entry.get("capability") if isinstance(entry, dict) else None
            if name not in CAPABILITIES:
                raise UsageError(f"Parameter 'capability' does not accept value '{name}'")
            state = entry.get("state")
            if not isinstance(state, bool):
                raise UsageError("Parameter 'state' expects a boolean")
            updates[name] = state
        self.capabilities.update(updates)

    def capability_list(self) -> list[dict[str, Any]]:
        return [{"capability": k, "state": v} for k, v in self.capabilities.items()]

    # --- jobs ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return any(job is not None and not job.finished for job in (self.outgoing, self.incoming))

    @property
    def images_inactive(self) -> bool:
        """True while this side must not write its images (incoming, or after hand-over)."""
        return any(
            job is not None and job.images_inactive for job in (self.outgoing, self.incoming)
        )

    def _transport(self, uri: str) -> tuple[MigrationTransport, str]:
        scheme, _rest = split_uri(uri)
        try:
            transport = self.registry.transport(scheme)()
        except ArcternError as exc:
            # QEMU's words first, so scripts that look for them keep working.
            raise MigrationError(
                f"Parameter 'uri' expects a valid migration protocol ({exc})"
            ) from None
        transport.check_uri(uri)
        return transport, uri

    def migrate(self, uri: str) -> None:
        """Start sending the machine to ``uri``; progress through query() and events."""
        if self.busy:
            raise MigrationError("There's a migration process in progress")
        if self.incoming is not None and self.incoming.status != "completed":
            raise MigrationError("Guest is waiting for an incoming migration")
        runstate = self.machine.runstate
        if runstate == "postmigrate":
            # QEMU's refusal, word for word (migrate_prepare, since QEMU 6.0, in 7.2 too).
            # Its images are inactive and its guest state is what a destination took
            # over; 'cont' takes the images back (it fails while a destination holds
            # them) and runs the guest, after which it may migrate again.
            raise MigrationError(POSTMIGRATE_REFUSAL)
        if runstate in ("shutdown", "inmigrate", "finish-migrate"):
            raise MigrationError(f"cannot migrate a guest in run state '{runstate}'")
        transport, uri = self._transport(uri)
        self.outgoing = OutgoingMigration(
            self.machine,
            transport,
            uri,
            self.parameters,
            dict(self.capabilities),
            self._status_changed,
            self.emit,
            self.wakeup,
        )

    def cancel(self) -> None:
        if self.outgoing is not None:
            self.outgoing.cancel()

    def _await_incoming(self) -> None:
        # QEMU's run state of a machine that waits for its state instead of booting.
        if self.machine.runstate == "prelaunch":
            self.machine.runstate = "inmigrate"

    def defer_incoming(self) -> None:
        """``-incoming defer``: wait for migrate-incoming."""
        self._await_incoming()
        self.deferred_incoming = True

    def start_incoming(self, uri: str, autostart: bool) -> None:
        """``-incoming URI`` or migrate-incoming: bind now, load when the source connects."""
        if self.incoming is not None:
            raise MigrationError("The incoming migration has already been started")
        transport, uri = self._transport(uri)
        self._await_incoming()
        self.incoming = IncomingMigration(
            self.machine,
            transport,
            uri,
            autostart,
            self.capabilities,
            self._status_changed,
            self.wakeup,
        )
        self.deferred_incoming = False

    def query(self) -> dict[str, Any]:
        job = self.outgoing or self.incoming
        return job.info() if job is not None else {}

    # --- main loop ---------------------------------------------------------------

    def poll(self) -> None:
        self.wakeup.drain()
        if self.outgoing is not None:
            self.outgoing.poll()
        incoming = self.incoming
        if incoming is not None and not incoming.finished:
            incoming.poll()
            if incoming.status == "failed" and self.exit_on_incoming_failure:
                incoming.wait_closed(EXIT_GRACE)
                self.machine.request_exit(1)

    def prepare_cont(self) -> None:
        """``cont``: refuse while loading; re-activate images after a hand-over (as QEMU does)."""
        if self.deferred_incoming or (self.incoming is not None and not self.incoming.finished):
            raise MigrationError("Guest is waiting for an incoming migration")
        if self.machine.runstate == "finish-migrate":
            raise MigrationError("Migration is not finalized yet")  # QEMU's words
        if self.images_inactive:
            activate_images(self.machine)
            for job in (self.outgoing, self.incoming):
                if job is not None:
                    job.images_inactive = False

    def shutdown(self) -> None:
        """``quit``: stop whatever is in flight; a source re-activates its images first."""
        if self.outgoing is not None and not self.outgoing.finished:
            self.outgoing.cancel()
        if self.incoming is not None and not self.incoming.finished:
            self.incoming.cancel()

    def close(self) -> None:
        """Stop in-flight migrations and leave the main loop."""
        self.shutdown()
        remove = getattr(self.machine, "remove_poll_hook", None)
        if remove is not None:
            remove(self.poll)
        self.wakeup.close()
