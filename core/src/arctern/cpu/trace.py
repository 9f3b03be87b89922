"""Loggers behind QEMU-style ``-d`` items, shared by every CPU target.

``-d in_asm`` logs each block's guest instructions when it is translated,
``-d cpu`` the register state before each block runs, ``-d int`` interrupts and
exceptions, ``-d exec`` each block executed. A CLI enables them with
:func:`enable` and routes the ``arctern.cpu`` logger where ``-D`` says.
"""

from __future__ import annotations

import logging

ITEMS = {
    "in_asm": "show guest code as it is translated",
    "cpu": "show CPU registers before entering a translated block",
    "int": "show interrupts and exceptions",
    "exec": "show each translated block executed",
}

in_asm = logging.getLogger("arctern.cpu.in_asm")
cpu = logging.getLogger("arctern.cpu.cpu")
interrupts = logging.getLogger("arctern.cpu.int")
exec_ = logging.getLogger("arctern.cpu.exec")

_LOGGERS = {"in_asm": in_asm, "cpu": cpu, "int": interrupts, "exec": exec_}


def enable(items: list[str] | tuple[str, ...]) -> None:
    """Turn on DEBUG logging for the named ``-d`` items (unknown names are ignored)."""
    for item in items:
        logger = _LOGGERS.get(item)
        if logger is not None:
            logger.setLevel(logging.DEBUG)
