"""Overlapping I/O on threads, for ``convert`` and ``compare``.

``convert`` writes the target on one thread while the source is read on
another (:class:`PipelinedWriter`); ``compare`` reads its two images at once.
Reads and writes are system calls that release the GIL, so the overlap gives
the copy most of a second core, as QEMU's parallel convert coroutines do.
Requests run in submission order, so the target sees exactly the sequence a
plain loop would issue. A small pool of preallocated buffers bounds memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

#: ("data", target offset, buffer, start, stop), ("zero", target offset, length, may_unmap)
#: or ("copy", target offset, source backend, source offset, length)
Request = tuple


class PipelinedWriter:
    """Owns ``depth`` buffers of ``chunk`` bytes; writes them to ``target`` in the background."""

    def __init__(
        self, target: Any, write: Callable[[int, memoryview], None], chunk: int, depth: int = 3
    ) -> None:
        self.target = target
        self.write = write
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(depth):
            self.free.put(memoryview(bytearray(chunk)))
        self.requests: queue.SimpleQueue[tuple[memoryview | None, list[Request]] | None] = (
            queue.SimpleQueue()
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="arctern-img-writer", daemon=True)
        self.thread.start()

    def buffer(self) -> memoryview:
        """A free buffer to read the next chunk into (waits for the writer if all are busy)."""
        self._raise_pending()
        return self.free.get()

    def submit(self, buf: memoryview | None, requests: list[Request]) -> None:
        """Queue ``requests``; ``buf`` (if any) returns to the pool once they are done."""
        self._raise_pending()
        self.requests.put((buf, requests))

    def close(self) -> None:
        """Wait until every request is written; raise the first error the writer met."""
        self.requests.put(None)
        self.thread.join()
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        while (item := self.requests.get()) is not None:
            buf, requests = item
            if self.error is None:
                try:
                    for request in requests:
                        self._perform(request)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc
            if buf is not None:
                self.free.put(buf)

    def _perform(self, request: Request) -> None:
        if request[0] == "data":
            _, offset, buf, start, stop = request
            self.write(offset, buf[start:stop])
        elif request[0] == "copy":
            _, offset, source, source_offset, length = request
            source.copy_range(source_offset, length, self.target, offset)
        else:
            _, offset, length, may_unmap = request
            self.target.pwrite_zeroes(offset, length, may_unmap=may_unmap)
