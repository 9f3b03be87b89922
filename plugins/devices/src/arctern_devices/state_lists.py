"""Loading a fixed set of live objects (virtqueues, PIT channels) from migrated state.

``struct_list`` fields load into fresh objects made by a factory; a device
whose list elements are wired to the machine (a virtqueue knows guest memory,
a channel its index) exposes the list through a property whose setter copies
the loaded values into the existing objects with :func:`copy_states`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arctern.errors import StreamError
from arctern.machine.vmstate import VMState


def copy_states(
    owner: str, targets: Sequence[Any], loaded: Sequence[Any], vmstate: VMState
) -> None:
    """Copy every field of ``vmstate`` from ``loaded[i]`` to ``targets[i]``."""
    if len(loaded) != len(targets):
        raise StreamError(
            f"{owner}: state has {len(loaded)} {vmstate.name} entries, "
            f"this device has {len(targets)}"
        )
    for target, state in zip(targets, loaded, strict=True):
        for field in vmstate.fields:
            setattr(target, field.attr, getattr(state, field.attr))
