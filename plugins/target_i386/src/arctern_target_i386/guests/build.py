"""Rebuild the prebuilt guests shipped here, from a checkout of the Arctern repository.

Run ``python plugins/target_i386/src/arctern_target_i386/guests/build.py`` after
changing a guest's C source or the test-guest runtime (``tests/guests``): it compiles
each guest here with that runtime and ``i686-linux-gnu-gcc`` (no build id, no symbol
table: nothing that varies between builds, so the same sources give the same bytes)
and writes its ``.elf`` next to it. The installed package needs no compiler: it
ships the ELFs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The guests shipped with this package (C source stems).
GUESTS = ("migration_demo",)
#: No symbol table: it would name the assembler's temporary object file (random).
REPRODUCIBLE = ("-s",)


def repository_tests() -> Path:
    """The repository's ``tests/`` folder (its ``guests`` package is the runtime)."""
    for parent in HERE.parents:
        if (parent / "tests" / "guests" / "build.py").is_file():
            return parent / "tests"
    raise SystemExit("build.py: run from a checkout of the Arctern repository (tests/guests)")


def build(stem: str, out_dir: Path) -> Path:
    """Compile ``stem``.c into ``out_dir``; returns the ELF's path."""
    sys.path.insert(0, str(repository_tests()))
    from guests.build import build_guest

    return build_guest(HERE / f"{stem}.c", cflags=REPRODUCIBLE, out_dir=out_dir)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for stem in GUESTS:
            shutil.copyfile(build(stem, Path(tmp)), HERE / f"{stem}.elf")
            print(f"wrote {HERE / f'{stem}.elf'}")


if __name__ == "__main__":
    main()
