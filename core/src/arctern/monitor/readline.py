"""The line editor of an HMP terminal, drawing exactly what QEMU 7.2's readline draws.

A user typing at ``(qemu) `` on ``mon:stdio`` sees the line redrawn after
every key with the same escape sequences as QEMU's (``ESC[D`` back over the
old text, the new text, ``ESC[K``), so terminal logs and expect scripts
match. Keys: printable characters insert; Backspace/DEL, C-d and ``ESC[3~``
delete; C-a/C-e, Home/End and the arrows move; C-w erases a word; Up/Down
walk the history (64 lines, a repeated line moves to the end); Tab asks
the completer for the word before the cursor.
"""

from __future__ import annotations

import os
from collections.abc import Callable

#: ``completer(text left of the cursor)`` -> (candidates, length of the word they complete)
Completer = Callable[[str], tuple[list[str], int]]
MAX_LINE = 4095
MAX_HISTORY = 64
_ESC, _CSI, _SS3 = 27, 155, ord("O")
_BACK, _FORWARD, _CLEAR_TO_END = "\033[D", "\033[C", "\033[K"


class ReadLine:
    """Edit one line at a time from input bytes; ``on_line(text)`` receives each finished line.

    ``echo(data)`` receives what the terminal must show (``\\n`` as newline:
    the caller converts it for the terminal). The line is kept as the bytes
    typed (one character per byte, so the echo is those bytes) and handed to
    ``on_line`` decoded as UTF-8.
    """

    def __init__(
        self,
        echo: Callable[[bytes], None],
        on_line: Callable[[str], None],
        completer: Completer | None = None,
    ) -> None:
        self.echo = echo
        self.on_line = on_line
        self.completer = completer
        self._prompt = ""
        self.history: list[str] = []
        self._hist_entry = -1  # the history line being edited, -1 for a new line
        self._buf = ""
        self._cursor = 0
        self._shown = ""  # what the terminal shows after the prompt
        self._shown_cursor = 0
        self._esc_state = "norm"
        self._esc_param = 0

    def restart(self) -> None:
        """Forget the line being typed (QEMU's readline_restart)."""
        self._buf, self._cursor = "", 0

    def show_prompt(self, prompt: str) -> None:
        self._prompt = prompt
        self.echo(prompt.encode())
        self._shown, self._shown_cursor = "", 0
        self._esc_state = "norm"

    def feed(self, data: bytes) -> None:
        for ch in data:
            self._key(ch)

    # --- one key -------------------------------------------------------------------

    def _key(self, ch: int) -> None:
        state = self._esc_state
        if state == "norm":
            if self._plain_key(ch):
                return
        elif state == "esc":
            self._esc_state = {ord("["): "csi", _SS3: "ss3"}.get(ch, "norm")
            self._esc_param = 0
        elif state == "csi":
            if 0x30 <= ch <= 0x39:
                self._esc_param = self._esc_param * 10 + ch - 0x30
                self._update()
                return
            self._csi(ch)
            self._esc_state = "norm"
        else:  # after ESC O: Home and End of some terminals
            if ch == ord("F"):
                self._cursor = len(self._buf)
            elif ch == ord("H"):
                self._cursor = 0
            self._esc_state = "norm"
        self._update()

    def _plain_key(self, ch: int) -> bool:
        """Act on a key outside an escape sequence; True once the line went to on_line."""
        if ch in (10, 13):
            line = self._buf
            self._add_history(line)
            self.echo(b"\n")
            self._buf, self._cursor = "", 0
            self._shown, self._shown_cursor = "", 0
            self.on_line(line.encode("latin-1").decode("utf-8", "replace"))
            return True
        if ch == 1:
            self._cursor = 0
        elif ch == 4:
            self._delete()
        elif ch == 5:
            self._cursor = len(self._buf)
        elif ch == 9:
            self._complete()
        elif ch == 23:
            self._erase_word()
        elif ch == _ESC:
            self._esc_state = "esc"
        elif ch == _CSI:
            self._esc_state = "csi"
        elif ch in (8, 127):
            if self._cursor > 0:
                self._cursor -= 1
                self._delete()
        elif ch >= 32:
            self._insert(chr(ch))
        self._update()
        return False

    def _insert(self, text: str) -> None:
        text = text[: MAX_LINE - len(self._buf)]
        at = self._cursor
        self._buf = self._buf[:at] + text + self._buf[at:]
        self._cursor += len(text)

    def _complete(self) -> None:
        """Tab: one candidate completes the word (and a space); several are listed, as QEMU."""
        if self.completer is None:
            return
        found, start = self.completer(self._buf[: self._cursor])
        if len(found) == 1:
            word = found[0]
            self._insert(word[start:] + (" " if word and not word.endswith("/") else ""))
        elif found:
            found.sort()
            self._insert(os.path.commonprefix(found)[start:])
            width = min(max(10, max(map(len, found)) + 2), 80)
            columns = 80 // width
            rows = [
                "".join(f.ljust(width) for f in found[i : i + columns]) + "\n"
                for i in range(0, len(found), columns)
            ]
            self.echo(("\n" + "".join(rows)).encode("latin-1"))
            self.show_prompt(self._prompt)

    def _csi(self, ch: int) -> None:
        key = chr(ch)
        if key in "AF":
            self._history_up()
        elif key in "BE":
            self._history_down()
        elif key == "D":
            self._cursor = max(0, self._cursor - 1)
        elif key == "C":
            self._cursor = min(len(self._buf), self._cursor + 1)
        elif key == "~":
            if self._esc_param == 1:
                self._cursor = 0
            elif self._esc_param == 3:
                self._delete()
            elif self._esc_param == 4:
                self._cursor = len(self._buf)

    def _delete(self) -> None:
        at = self._cursor
        self._buf = self._buf[:at] + self._buf[at + 1 :]

    def _erase_word(self) -> None:
        """C-w: back over spaces, then over the word before them (as QEMU counts them)."""
        end = self._cursor
        if end == 0 or end > len(self._buf):
            return
        start = end - 1
        while start > 0 and self._buf[start].isspace():
            start -= 1
        while start > 0:
            if self._buf[start].isspace():
                start += 1
                break
            start -= 1
        self._buf = self._buf[:start] + self._buf[end:]
        self._cursor = start

    # --- history ---------------------------------------------------------------------

    def _add_history(self, line: str) -> None:
        if not line:
            return
        if line in self.history:
            self.history.remove(line)  # a repeated line moves to the end
        elif len(self.history) == MAX_HISTORY:
            del self.history[0]
        self.history.append(line)
        self._hist_entry = -1

    def _history_up(self) -> None:
        if self._hist_entry == 0 or not self.history:
            return
        if self._hist_entry == -1:
            self._hist_entry = len(self.history)
        self._hist_entry -= 1
        self._buf = self.history[self._hist_entry]
        self._cursor = len(self._buf)

    def _history_down(self) -> None:
        if self._hist_entry == -1:
            return
        self._hist_entry += 1
        if self._hist_entry < len(self.history):
            self._buf = self.history[self._hist_entry]
        else:
            self._buf, self._hist_entry = "", -1
        self._cursor = len(self._buf)

    # --- drawing -------------------------------------------------------------------------

    def _update(self) -> None:
        """Redraw what changed, with the sequences QEMU's readline_update writes."""
        out = []
        if self._buf != self._shown:
            out.append(_BACK * self._shown_cursor + self._buf + _CLEAR_TO_END)
            self._shown, self._shown_cursor = self._buf, len(self._buf)
        delta = self._cursor - self._shown_cursor
        if delta:
            out.append(_FORWARD * delta if delta > 0 else _BACK * -delta)
            self._shown_cursor = self._cursor
        if out:
            self.echo("".join(out).encode("latin-1"))
