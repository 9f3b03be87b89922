"""The i386 CPU target: a translating interpreter for 32-bit x86 protected mode."""

from .cpu import I386CPU


class PentiumCPU(I386CPU):
    """The same core under QEMU's "pentium" model name."""

    name = "pentium"


__all__ = ["I386CPU", "PentiumCPU"]
