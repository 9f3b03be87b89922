"""Node permissions, as QEMU's BLK_PERM_* bits.

A node that is in use holds a set of permissions (what it does to the image)
and shares a set with other users (what it lets others do). Protocol drivers
turn them into image locks (see :mod:`arctern.block.locking`), so that two
processes, Arctern or QEMU, refuse each other the same way.
"""

from __future__ import annotations

CONSISTENT_READ = 1 << 0
WRITE = 1 << 1
WRITE_UNCHANGED = 1 << 2
RESIZE = 1 << 3
GRAPH_MOD = 1 << 4
ALL = CONSISTENT_READ | WRITE | WRITE_UNCHANGED | RESIZE | GRAPH_MOD
NONE = 0

#: Names as QEMU prints them in lock errors (bit N is NAMES[N]).
NAMES = ("consistent read", "write", "write unchanged", "resize", "change children")


def for_open(*, read_only: bool, force_share: bool) -> tuple[int, int]:
    """(perm, shared) a user of an image holds, as qemu-io/qemu-img take them.

    A writer uses consistent-read, write and resize; every user that does not
    force sharing refuses to share write and resize, because a format driver
    cannot cope with someone else changing the image under its cached
    metadata. ``force_share`` (qemu-img -U) shares everything.
    """
    perm = CONSISTENT_READ if read_only else CONSISTENT_READ | WRITE | RESIZE
    shared = ALL if force_share else ALL & ~(WRITE | RESIZE)
    return perm, shared


def names(bits: int) -> list[str]:
    """The names of the permissions in ``bits``, lowest bit first."""
    return [name for i, name in enumerate(NAMES) if bits & (1 << i)]
