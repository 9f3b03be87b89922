"""Interrupt request lines between devices and interrupt controllers.

A device drives an :class:`IRQLine` (``raise_()``, ``lower()``, ``pulse()``);
the interrupt controller that owns the input connects a handler to it. As in
QEMU's ``qemu_set_irq``, every :meth:`IRQLine.set` reaches the handler, even
when the level does not change: edge detection is the controller's business,
and a device that re-asserts its level after migration (``post_load``) must
be heard.
"""

from __future__ import annotations

from collections.abc import Callable

IRQHandler = Callable[[bool], None]


class IRQLine:
    """One interrupt line; ``level`` is the last level driven onto it."""

    __slots__ = ("name", "level", "_handler")

    def __init__(self, name: str = "", handler: IRQHandler | None = None) -> None:
        self.name = name
        self.level = False
        self._handler = handler

    @property
    def connected(self) -> bool:
        return self._handler is not None

    def connect(self, handler: IRQHandler | None) -> None:
        """Route the line into ``handler(level)`` (an interrupt controller input); None cuts it."""
        self._handler = handler

    def set(self, level: bool) -> None:
        self.level = level = bool(level)
        if self._handler is not None:
            self._handler(level)

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def pulse(self) -> None:
        """An edge: raise, then lower (edge-triggered inputs latch the rising edge)."""
        self.set(True)
        self.set(False)

    def __repr__(self) -> str:
        return f"<IRQLine {self.name} {'high' if self.level else 'low'}>"
