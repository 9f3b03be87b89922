"""arctern-demo: live-migrate a guest that writes its disk, and show that nothing was lost.

Creates a fresh image, starts a destination ``arctern-system -incoming`` and a
source running the built-in guest, migrates the guest while it writes, shows
the progress, then where the guest runs now, the downtime, the guest's own
verification line and ``arctern-img check``. Exits 1 if anything did not verify.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arctern.errors import UsageError

try:  # the "demo" extra: pip install 'arctern[demo]'
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape
    from rich.table import Table

    from arctern.demo.run import TRANSPORTS, DemoOptions, DemoResult, MigrationDemo
except ImportError as exc:  # pragma: no cover - depends on the installation
    MISSING: str | None = exc.name
else:
    MISSING = None

from .common import run_cli

PROG = "arctern-demo"
MiB = 1 << 20


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=TRANSPORTS, default="tcp")
    parser.add_argument("--format", dest="image_format", choices=("qcow2", "raw"), default="qcow2")
    parser.add_argument("--ram", type=int, default=64, metavar="MIB", help="guest RAM (MiB)")
    parser.add_argument(
        "--max-bandwidth", type=int, default=0, metavar="MIB", help="MiB/s (default: unlimited)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the image, logs and state here")
    return parser


def _progress_table(info: dict[str, Any]) -> Table:
    ram = info.get("ram", {})
    table = Table(title="migration (query-migrate)", show_header=False, min_width=48)
    table.add_row("status", str(info.get("status", "")))
    table.add_row("RAM transferred", f"{ram.get('transferred', 0) / MiB:.1f} MiB")
    table.add_row("remaining", f"{ram.get('remaining', 0) / MiB:.1f} MiB")
    table.add_row("zero pages / data pages", f"{ram.get('duplicate', 0)} / {ram.get('normal', 0)}")
    table.add_row("dirty pages rate", f"{ram.get('dirty-pages-rate', 0)} pages/s")
    table.add_row("passes", str(ram.get("dirty-sync-count", 0)))
    table.add_row("throughput", f"{ram.get('mbps', 0):.0f} Mbit/s")
    table.add_row("total time", f"{info.get('total-time', 0)} ms")
    return table


class ConsoleObserver:
    """Steps and guest lines as they come, the progress table live while migrating."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def step(self, text: str) -> None:
        self._stop_live()
        self.console.print(f"[bold]*[/bold] {escape(text)}")

    def guest(self, line: str) -> None:
        (self.live.console if self.live else self.console).print(f"  [dim]{escape(line)}[/dim]")

    def progress(self, info: dict[str, Any]) -> None:
        if self.live is None:
            self.live = Live(console=self.console, refresh_per_second=8, transient=False)
            self.live.start()
        self.live.update(_progress_table(info))

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.line()

    def outcome(self, result: DemoResult, options: DemoOptions) -> None:
        self._stop_live()
        info = result.migration
        table = Table(title="outcome", show_header=False)
        where = "the destination (and finished there)" if result.guest_status is not None else "-"
        table.add_row("guest ran on after the hand-over", where)
        table.add_row("transport / image", f"{options.transport} / {options.image_format}")
        table.add_row("downtime", f"{info.get('downtime', '-')} ms")
        table.add_row("total time", f"{info.get('total-time', '-')} ms")
        table.add_row("guest says", result.guest_line or "(no verification line)")
        table.add_row("arctern-img check", result.check_output or "(not run)")
        if "error-desc" in info:
            table.add_row("migration error", escape(info["error-desc"]))
        self.console.print(table)
        verdict = "[green]everything verified[/green]" if result.ok else "[red]NOT verified[/red]"
        self.console.print(f"[bold]{verdict}")


def _main(argv: Sequence[str]) -> int:
    if MISSING:
        raise UsageError(f"the demo needs {MISSING}: pip install 'arctern[demo]'")
    args = _parser().parse_args(argv)
    if args.ram < 16:
        raise UsageError("--ram: the demo guest needs at least 16 MiB")
    console = Console(highlight=False)
    observer = ConsoleObserver(console)
    with tempfile.TemporaryDirectory(prefix="arctern-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        options = DemoOptions(
            workdir=workdir,
            transport=args.transport,
            image_format=args.image_format,
            ram_mib=args.ram,
            max_bandwidth=args.max_bandwidth * MiB,
        )
        result = MigrationDemo(options, observer).run()
        observer.outcome(result, options)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
