"""Target-independent helpers for translating guest blocks into Python functions.

A target's code generator emits Python source for a block with :class:`Source`,
one guest instruction after another; :func:`compile_block` turns it into a
function. The generated code keeps guest registers in Python locals and writes
them back in a ``finally`` clause, and orders every instruction so that nothing
is committed before its last possible fault. A fault therefore leaves the state
exactly as it was before the faulting instruction, and :func:`fault_index`
recovers *which* instruction it was from the traceback's line number: the fast
path pays nothing for precise exceptions.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from types import CodeType
from typing import Any

from arctern.cpu.tbcache import TranslatedBlock


class CodeModified(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by translated code after a store overwrote translated code.

    The instruction that stored has completed; execution resumes at the next one
    with a fresh translation.
    """


class Source:
    """Lines of generated Python with indentation and per-instruction line marks."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.marks: list[int] = []
        self.depth = 0

    def emit(self, *lines: str) -> None:
        pad = "    " * self.depth
        self.lines.extend(pad + line for line in lines)

    def mark(self) -> None:
        """The next emitted line starts a new guest instruction."""
        self.marks.append(len(self.lines) + 1)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def compile_block(source: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """Compile generated source defining function ``tb`` into a function using ``namespace``.

    Compiled code is shared by source text: the same guest code translated again
    (after a reset, a reload over itself, in another CPU) costs no second compile.
    """
    code = _compile(source, name)
    local: dict[str, Any] = {}
    exec(code, namespace, local)
    return local["tb"]


@functools.lru_cache(maxsize=2048)
def _compile(source: str, name: str) -> CodeType:
    return compile(source, name, "exec")


def clear_compile_cache() -> None:
    """Forget shared compiled code (benchmarks measuring translation from scratch)."""
    _compile.cache_clear()


def fault_index(exc: BaseException, block: TranslatedBlock) -> int:
    """Index of the block's instruction that was executing when ``exc`` was raised."""
    code = block.fn.__code__
    tb = exc.__traceback__
    lineno = None
    while tb is not None:
        if tb.tb_frame.f_code is code:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None or not block.lines:
        return 0
    return max(0, bisect.bisect_right(block.lines, lineno) - 1)
