"""Child process of the SIGKILL test: allocating writes into slots, flushing every few.

Usage: crash_writer.py IMAGE FIRST_SLOT SLOT_SIZE [OPEN_OPTIONS_JSON [discard]]

Slot i holds ``slot_data(i)`` at ``slot_offset(i)``; neighbouring slots share
clusters, so every write copies on write the partial clusters of its
neighbours. With ``discard``, writing a slot i with ``discarded_by(i)`` also
discards slot i - DISCARD_LAG (freeing its whole clusters). After each flush
the writer prints how many slots are durable.
"""

from __future__ import annotations

import json
import random
import sys
import time

GAP = 100
DISCARD_LAG = 3


def slot_offset(i: int, slot_size: int) -> int:
    return i * slot_size + GAP


def slot_data(i: int, slot_size: int) -> bytes:
    return random.Random(i).randbytes(slot_size - 2 * GAP)


def discarded_by(i: int) -> int | None:
    """The slot that writing slot ``i`` discards (with the discard option), if any."""
    return i - DISCARD_LAG if i % 5 == 4 else None


def main() -> None:
    from arctern.block import open_image

    path, first, slot_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    discard = sys.argv[5:] == ["discard"]
    image = open_image(path, fmt="qcow2", options=options, discard="unmap")
    print("ready", flush=True)
    slots = image.length // slot_size
    for i in range(first, slots):
        image.pwrite(slot_offset(i, slot_size), slot_data(i, slot_size))
        victim = discarded_by(i)
        if discard and victim is not None:
            image.pdiscard(slot_offset(victim, slot_size), slot_size - 2 * GAP)
        if i % 4 == 3:
            image.flush()
            print(i + 1, flush=True)
    image.flush()
    print(slots, flush=True)
    time.sleep(60)


if __name__ == "__main__":
    main()
