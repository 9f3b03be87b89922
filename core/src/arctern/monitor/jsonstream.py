"""Splitting a QMP byte stream into JSON messages, as QEMU's json-streamer does.

Messages are found by bracket depth outside strings, so a client may send
several in one write or one in many writes, with or without newlines. The
scan resumes where it stopped (a regex skips ordinary bytes), so a slow
client costs nothing and an oversized one is cut off at ``max_size``.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(rb'["\\{}\[\]\n]')
_QUOTE, _BACKSLASH, _NEWLINE = ord('"'), ord("\\"), ord("\n")


class JSONSplitter:
    """Feed bytes, get complete top-level JSON texts (bytes) back."""

    def __init__(self, max_size: int = 1 << 20, max_depth: int = 1024) -> None:
        self.max_size = max_size
        self.max_depth = max_depth
        self._reset()

    def _reset(self) -> None:
        self.buffer = bytearray()
        self.scan = 0
        self.depth = 0
        self.in_string = False
        self.skipping = False  # after an error: drop input up to the next newline

    def feed(self, data: bytes) -> tuple[list[bytes], str | None]:
        """Complete messages in ``data`` and what came before, and an error if over limits.

        Over a limit the partial message is dropped, and so is everything up
        to the next newline (the rest of that message); the error text says
        why. Text outside any object that ends with a newline is returned too
        (as a message that will not parse), so a client typing garbage gets an
        error reply instead of silence.
        """
        buf = self.buffer
        buf += data
        messages: list[bytes] = []
        error = None
        pos = self.scan
        while True:
            if self.skipping:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    buf.clear()
                    pos = 0
                    break
                del buf[: newline + 1]
                pos, self.skipping = 0, False
            match = _SPECIAL.search(buf, pos)
            if match is None:
                break
            char = buf[match.start()]
            pos = match.end()
            if self.in_string:
                if char == _BACKSLASH:
                    pos += 1  # the escaped character, whatever it is
                elif char == _QUOTE:
                    self.in_string = False
                continue
            if char == _QUOTE:
                self.in_string = True
            elif char in b"{[":
                self.depth += 1
                if self.depth > self.max_depth:
                    error = f"JSON nesting deeper than {self.max_depth}"
                    self._drop(pos)
                    pos = 0
            elif char in b"}]":
                self.depth -= 1
                if self.depth <= 0:
                    messages.append(bytes(buf[:pos]))
                    del buf[:pos]
                    pos, self.depth = 0, 0
            elif char == _NEWLINE and self.depth == 0:
                text = bytes(buf[:pos]).strip()
                del buf[:pos]
                pos = 0
                if text:
                    messages.append(text)
        self.scan = max(pos, len(buf)) if not self.skipping else 0
        if len(buf) > self.max_size:
            error = f"JSON message larger than {self.max_size} bytes"
            self._drop(len(buf))
        return messages, error

    def _drop(self, upto: int) -> None:
        """Forget the current message (its first ``upto`` bytes) and skip to a newline."""
        del self.buffer[:upto]
        self.scan = 0
        self.depth = 0
        self.in_string = False
        self.skipping = True
