"""Registration of the i386 target (entry point ``arctern.targets: i386``).

The CPU package is imported inside its hook: importing this module (and
the microvm machine type) stays cheap, and the CPU's translator loads only
when the registry asks for CPU models.
"""

from __future__ import annotations

from arctern.hookspecs import hookimpl

from .microvm import Microvm


@hookimpl
def arctern_cpu_models() -> list[type]:
    from .cpu import I386CPU, PentiumCPU

    return [I386CPU, PentiumCPU]


@hookimpl
def arctern_machine_types() -> list[type]:
    return [Microvm]
