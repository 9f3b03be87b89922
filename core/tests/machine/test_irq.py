"""IRQ lines deliver every level change, and re-asserted levels, to their controller."""

from arctern.machine.irq import IRQLine


def test_line_reaches_its_handler_and_remembers_its_level():
    seen = []
    line = IRQLine("gsi4")
    line.raise_()  # not connected yet: the level is kept
    assert line.level and not line.connected
    line.connect(seen.append)
    line.set(True)  # re-asserted after migration: must be heard
    line.lower()
    line.pulse()
    assert seen == [True, False, True, False]
    assert not line.level
    line.connect(None)
    line.raise_()
    assert seen == [True, False, True, False]
