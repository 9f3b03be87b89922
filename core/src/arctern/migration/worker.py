"""The thread shape both migration sides share: do the work, report a failure in one line.

A worker thread must never die with a traceback: whatever goes wrong ends up
in ``error`` for the main loop to turn into QEMU's ``failed`` status, unless
the thread was told to stop (then the failure is only the consequence of
stopping it). In every case the stream is closed and the main loop woken.
"""

from __future__ import annotations

import logging
import threading

from arctern.errors import ArcternError
from arctern.migration.transport import MigrationStream
from arctern.migration.wakeup import Wakeup

log = logging.getLogger(__name__)


class MigrationWorker(threading.Thread):
    """Runs :meth:`work` once; subclasses say how a foreign exception reads (:meth:`describe`)
    and whether they were stopped on purpose (:attr:`stopping`)."""

    def __init__(self, name: str, wakeup: Wakeup) -> None:
        super().__init__(name=name, daemon=True)
        self.wakeup = wakeup
        self.stream: MigrationStream | None = None
        self.error: str | None = None

    @property
    def stopping(self) -> bool:
        """True once the owner closed or cancelled this worker."""
        raise NotImplementedError

    def work(self) -> None:
        raise NotImplementedError

    def describe(self, exc: Exception) -> str:
        """The error line for an exception that is not an ArcternError."""
        raise NotImplementedError

    def run(self) -> None:
        try:
            self.work()
        except ArcternError as exc:
            if not self.stopping:
                self.error = str(exc)
        except Exception as exc:  # a thread must report, not die with a traceback
            log.debug("%s failed", self.name, exc_info=True)
            if not self.stopping:
                self.error = self.describe(exc)
        finally:
            self.finish()

    def finish(self) -> None:
        """Close the stream and wake the main loop, however :meth:`work` ended."""
        if self.stream is not None:
            self.stream.close()
        self.wakeup.signal()
