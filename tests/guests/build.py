"""Build test guests (C, i686-linux-gnu-gcc, Multiboot v1 ELF) and run them under an emulator.

Usage from a test (see README.md)::

    from guests.build import build_guest, run_guest

    elf = build_guest(Path(__file__).parent / "my_guest.c")       # cached per content
    ours = run_guest("arctern", elf, append="quiet")              # (output, status)
    assert ours == run_guest("qemu", elf, append="quiet")

The pytest fixtures at the end (``guest_elf``, ``run_guest_both``) wrap the same.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CC = "i686-linux-gnu-gcc"
CFLAGS = (
    "-m32",
    "-std=gnu11",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",  # no x87/SSE in guests; lets handlers use __attribute__((interrupt))
    "-nostdlib",
    "-static",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
)
RUNTIME = (HERE / "crt0.S", HERE / "libguest.c")
#: The options both emulators get: the microvm board, COM1 on stdout, debug-exit at 0xf4.
BASE_ARGS = (
    "-nodefaults",
    "-nographic",
    "-serial",
    "stdio",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=1",
)
DEFAULT_TIMEOUT = 120.0


def _cache_dir() -> Path:
    path = Path(
        os.environ.get("ARCTERN_GUEST_CACHE") or Path(tempfile.gettempdir()) / "arctern-guests"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_guest(
    sources: Path | Iterable[Path],
    *,
    cflags: Sequence[str] = (),
    out_dir: Path | None = None,
    runtime: bool = True,
) -> Path:
    """Compile guest sources into a Multiboot kernel; cached by content.

    With ``runtime`` (the default) the sources are linked with crt0, libguest and
    link.ld into an ELF. Without it they stand alone: ``cflags`` then carry the
    link options (e.g. ``-Wl,--oformat=binary`` for a flat kernel).
    """
    sources = [Path(sources)] if isinstance(sources, str | Path) else [Path(s) for s in sources]
    # the runtime's headers count too: a guest may include virtio_mmio.h
    support = [*RUNTIME, *sorted(HERE.glob("*.h")), HERE / "link.ld"] if runtime else []
    digest = hashlib.sha256(" ".join((CC, *CFLAGS, *cflags, str(runtime))).encode())
    for path in [*support, *sources]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = (out_dir or _cache_dir()) / f"{sources[0].stem}-{digest.hexdigest()[:16]}.elf"
    if out.exists():
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    linking = [f"-I{HERE}", f"-Wl,-T,{HERE / 'link.ld'}"] if runtime else []
    command = [CC, *CFLAGS, *cflags, *linking, "-o", str(tmp)]
    command += [*map(str, RUNTIME if runtime else ()), *map(str, sources), "-lgcc"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"building {sources[0].name} failed:\n{result.stderr}")
    tmp.replace(out)  # atomic: parallel test runs never see half an ELF
    return out


def emulator_command(emulator: str) -> list[str]:
    """How to start ``emulator`` ("qemu" or "arctern") with microvm."""
    if emulator == "qemu":
        return ["qemu-system-i386", "-M", "microvm"]
    if emulator == "arctern":
        script = Path(sys.executable).with_name("arctern-system")
        base = [str(script)] if script.exists() else [sys.executable, "-m", "arctern.cli.system"]
        return [*base, "-M", "microvm"]
    raise ValueError(f"unknown emulator {emulator!r}")


def run_guest(
    emulator: str,
    elf: Path,
    *args: str,
    append: str | None = None,
    machine_options: str = "",
    stdin: bytes = b"",
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[str, int]:
    """Run ``elf`` to its exit; return (serial output, exit status).

    ``args`` are extra emulator options (-drive, -device, -global ...);
    ``machine_options`` is appended to ``-M microvm`` (e.g. "acpi=off");
    ``stdin`` is what the guest reads from COM1.
    """
    command = emulator_command(emulator)
    if machine_options:
        command[-1] += f",{machine_options}"
    command += [*BASE_ARGS, "-kernel", str(elf), *args]
    if append is not None:
        command += ["-append", append]
    result = subprocess.run(command, capture_output=True, timeout=timeout, input=stdin)
    return result.stdout.decode(errors="replace"), result.returncode


def require_toolchain() -> None:
    """Fail (not skip) loudly when the cross compiler or QEMU is missing: CI installs them."""
    for tool in (CC, "qemu-system-i386"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/setup.sh")


@pytest.fixture(scope="session")
def guest_elf():
    """``guest_elf(source, cflags=(), runtime=True)``: build once per session, return the path."""
    require_toolchain()
    built: dict[tuple, Path] = {}

    def build(sources, cflags: Sequence[str] = (), runtime: bool = True) -> Path:
        key = (str(sources), tuple(cflags), runtime)
        if key not in built:
            built[key] = build_guest(sources, cflags=cflags, runtime=runtime)
        return built[key]

    return build


@pytest.fixture
def run_guest_both():
    """``run_guest_both(elf, *args, **kw)`` -> {"qemu": (output, status), "arctern": (...)}."""
    require_toolchain()

    def both(elf: Path, *args: str, **kwargs) -> dict[str, tuple[str, int]]:
        return {name: run_guest(name, elf, *args, **kwargs) for name in ("qemu", "arctern")}

    return both
