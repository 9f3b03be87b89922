"""Child process of the snapshot SIGKILL test: one snapshot operation, killed mid-way.

Usage: snapshot_crasher.py IMAGE OPERATION ARGUMENT KILL_AT

OPERATION is create (ARGUMENT: a name), goto (an ID or name) or delete (a name).
The process SIGKILLs itself just before its KILL_AT-th write to the image file
(0: never); when it lives to the end it prints how many writes it made.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    from arctern.block import open_image

    path, operation, argument, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    image = open_image(path, fmt="qcow2")
    file = image.node.file
    write = file.pwrite
    writes = 0

    def counted_write(offset, data):
        nonlocal writes
        writes += 1
        if writes == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        write(offset, data)

    file.pwrite = counted_write
    driver = image.node.driver
    if operation == "create":
        driver.snapshot_create(argument, date_sec=1, date_nsec=0)
    elif operation == "goto":
        driver.snapshot_goto(argument)
    else:
        found = next(s for s in driver.info().snapshots if s["name"] == argument)
        driver.snapshot_delete(found["id"], argument)
    image.close()
    print(writes)


if __name__ == "__main__":
    main()
