"""QMP queries about the machine a management tool asks as soon as it connects.

query-target, query-kvm, query-uuid, query-iothreads and
query-hotpluggable-cpus answer as qemu-system-i386 7.2 does for the same
machine. Where Arctern honestly differs it says so: it has no KVM, so
query-kvm reports KVM as not present (QEMU built with KVM says present).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from arctern.errors import UsageError
from arctern.monitor.commands import QMPError, command

if TYPE_CHECKING:
    from arctern.monitor.monitor import Monitor

#: The UUID a machine has without ``-uuid`` (QEMU's qemu_uuid, all zeros).
NULL_UUID = "00000000-0000-0000-0000-000000000000"
_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def parse_uuid(text: str) -> str:
    """``-uuid TEXT`` as QEMU's qemu_uuid_parse takes it (8-4-4-4-12 hex digits, any case)."""
    if not _UUID.match(text):
        raise UsageError(f"-uuid {text}: failed to parse UUID string: wrong format")
    return text.lower()


@command("query-target")
def query_target(mon: Monitor, args: dict) -> dict:
    return {"arch": mon.machine.machine_type.arch}


@command("query-kvm")
def query_kvm(mon: Monitor, args: dict) -> dict:
    return {"enabled": False, "present": False}


@command("query-uuid")
def query_uuid(mon: Monitor, args: dict) -> dict:
    return {"UUID": mon.uuid}


@command("query-iothreads")
def query_iothreads(mon: Monitor, args: dict) -> list:
    return []  # no -object iothread: every drive is served by the main loop


@command("query-hotpluggable-cpus")
def query_hotpluggable_cpus(mon: Monitor, args: dict) -> list:
    # No Arctern board hot-plugs CPUs; QEMU says this for such boards (microvm).
    raise QMPError("The feature 'query-hotpluggable-cpus' is not enabled")
