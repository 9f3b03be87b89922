"""Translate decoded guest instructions into the Python source of one region.

Generated code keeps guest registers and the lazy-flag quadruple (fo, fr, fa,
fb) in locals and writes them back in a ``finally`` clause. Every instruction
performs its loads and stores (the points that can fault) before it assigns
registers or flags, so a fault leaves the state of the instruction boundary
(see :mod:`arctern.cpu.translate`). Flags are only produced when a later reader
can see them (liveness over the region), and a condition after a known
producer is one Python comparison (``cmp; jl`` ->
``(fa ^ 0x80000000) < (fb ^ 0x80000000)``).

Memory in the fast mode (flat segments, paging off) indexes ``ram.data``
directly: a load past RAM raises ``struct.error``/``IndexError``, which the
CPU answers by re-running that one instruction in the "slow" mode where every
access goes through the softmmu helpers (``RD``/``WR``: MMIO, ROM, paging).
"""

from __future__ import annotations

from .compiler import TERMINATORS, Mode, successors
from .ops_integer import IntegerOps
from .ops_system import SystemOps


class BlockCompiler(IntegerOps, SystemOps):
    """Generates ``def tb(lim, pc): ...`` for a region: blocks entered at ``pc``."""


__all__ = ["TERMINATORS", "BlockCompiler", "Mode", "successors"]
