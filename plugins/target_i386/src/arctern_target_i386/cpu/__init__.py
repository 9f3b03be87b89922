"""The i386 CPU target: a translating interpreter for 32-bit x86 protected mode."""

from .cpu import I386CPU


class PentiumCPU(I386CPU):
    """QEMU's "pentium": family 5 model 4, no CMOV announced (the core still has it)."""

    name = "pentium"
    description = "Intel Pentium (i586 integer core, no x87)"
    cpuid_signature = 0x543
    cpuid_features = I386CPU.cpuid_features & ~(1 << 15)


__all__ = ["I386CPU", "PentiumCPU"]
