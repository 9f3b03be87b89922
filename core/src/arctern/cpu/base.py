"""The CPU contract, and the parts of a translating CPU that every target shares.

A CPU model class (``-cpu NAME``) executes guest code against the machine's
:class:`arctern.machine.memory.AddressSpace` and ``IOSpace``. The main loop
calls :meth:`CPU.run` with an instruction budget; between slices it services
timers, character devices, the monitor and migration.

Migration needs ``get_state``/``set_state`` from every CPU: they are required
hooks. The state is plain data (ints, bytes, lists, dicts of those) and must be
identical after a round trip; caches (translated blocks, TLB) are not state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from arctern.contract import required

if TYPE_CHECKING:
    from arctern.machine.machine import Machine


class CPU:
    """Base class of CPU models. Subclass it and set ``name`` and ``arch``."""

    #: The model name users pass with ``-cpu`` ("qemu32").
    name: ClassVar[str] = ""
    #: The architecture the model belongs to ("i386", "arm"); machines check it.
    arch: ClassVar[str] = ""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        #: True while the CPU waits for an interrupt (HLT, WFI).
        self.halted = False
        #: Guest instructions retired since reset.
        self.icount = 0

    @required
    def reset(self) -> None:
        """Put the CPU in its architectural reset state."""

    @required
    def run(self, budget: int) -> int:
        """Execute up to ``budget`` guest instructions; return how many were executed.

        Returns early when the CPU halts with no interrupt pending or when the
        machine asks the CPU to stop (``machine.exit_request``).
        """

    @required
    def get_state(self) -> dict[str, Any]:
        """All architectural state, as plain data, for migration and snapshots."""

    @required
    def set_state(self, state: dict[str, Any]) -> None:
        """Load state produced by :meth:`get_state` (possibly in another process)."""

    def set_irq(self, level: bool) -> None:
        """The interrupt request input from the machine's interrupt controller changed."""
