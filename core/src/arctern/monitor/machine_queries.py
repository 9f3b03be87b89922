"""QMP queries about the machine a management tool asks as soon as it connects.

query-target, query-kvm, query-uuid, query-iothreads,
query-hotpluggable-cpus, query-machines and query-cpu-definitions answer as
qemu-system-i386 7.2 does for the same machine. Where Arctern honestly
differs it says so: it has no KVM, so query-kvm reports KVM as not present
(QEMU built with KVM says present); its boards take one CPU (cpu-max 1) and
its default board is microvm; its CPU models are not versioned (no alias-of).
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


def _qom_type(model: str, arch: str) -> str:
    return f"{model}-{arch}-cpu"  # QEMU's CPU type names ("qemu32-i386-cpu")


@command("query-machines")
def query_machines(mon: Monitor, args: dict) -> list:
    from arctern.cli.system_options import DEFAULT_MACHINE  # the CLI imports this module

    arch = mon.machine.machine_type.arch
    machines = []
    for name, board in sorted(mon.registry.machine_types.items()):
        if board.arch != arch:
            continue
        info = {"name": name, "hotpluggable-cpus": False, "numa-mem-supported": False}
        if board.default_cpu:
            info["default-cpu-type"] = _qom_type(board.default_cpu, arch)
        if name == DEFAULT_MACHINE:
            info["is-default"] = True
        info |= {"cpu-max": 1, "deprecated": False, "default-ram-id": f"{name}.ram"}
        machines.append(info)
    return machines


@command("query-cpu-definitions")
def query_cpu_definitions(mon: Monitor, args: dict) -> list:
    arch = mon.machine.machine_type.arch
    return [
        {
            "name": name,
            "typename": _qom_type(name, arch),
            "unavailable-features": [],
            "static": False,
            "migration-safe": True,
            "deprecated": False,
        }
        for name, model in sorted(mon.registry.cpu_models.items())
        if model.arch == arch
    ]
