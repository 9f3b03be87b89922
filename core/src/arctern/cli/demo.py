"""arctern-demo: live-migrate a running guest that writes its disk, and show nothing was lost.

On its built-in default it creates a fresh qcow2 image in a temporary directory,
starts a destination ``arctern-system -incoming`` on it and a source running the
machine's built-in guest (which writes, reads back and checks disk sectors and
rewrites RAM), migrates the guest over tcp while it writes, driving both sides over
QMP, and shows the progress live. Then: where the guest runs now, the downtime and
total time, the guest's own verification line (printed on the destination) and
``arctern-img check`` of the image. Exit status 0 when everything verified, 1 if
anything did not (or failed on the way: one error line), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from arctern.errors import UsageError

from .common import run_cli
from .demo_session import (
    NO_CHECK,
    TRANSPORTS,
    DemoOptions,
    DemoResult,
    MigrationDemo,
    builtin_guest,
)
from .img_units import parse_size

PROG = "arctern-demo"
MiB = 1 << 20
#: The guest's code, data, 4 MiB working area and 1 MiB I/O buffer need this much.
MIN_RAM = 16 * MiB


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Live-migrate a running guest that writes its disk, and show that "
        "nothing was lost.",
        epilog="Exit status: 0 everything verified, 1 something did not (or failed on the "
        "way), 130 interrupted. See docs/user/arctern-demo.md.",
    )
    parser.add_argument(
        "-M", "--machine", default="microvm", metavar="NAME[,OPTS]",
        help="machine type and options, as arctern-system -M (default: microvm)",
    )  # fmt: skip
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default="tcp",
        help="tcp: or unix: to a waiting destination, or exec: through a file (default: tcp)",
    )  # fmt: skip
    parser.add_argument(
        "--format", dest="image_format", choices=("qcow2", "raw"), default="qcow2",
        help="the image format (default: qcow2)",
    )  # fmt: skip
    parser.add_argument(
        "-m", "--ram", default="128M", metavar="SIZE",
        help="guest RAM, as -m (a bare number counts MiB; default: 128M)",
    )  # fmt: skip
    parser.add_argument(
        "--max-bandwidth", default="4M", metavar="RATE",
        help="migration bandwidth per second (default: 4M, slow enough to watch the rounds;"
        " 0: unlimited)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, help="tcp: the destination's port (default: a free one)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (image, logs)"
    )
    parser.add_argument("--workdir", type=Path, help="work in this directory (kept) instead")
    return parser


def _size(option: str, text: str, default_suffix: str) -> int:
    try:
        return parse_size(text, default_suffix)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _options(args: argparse.Namespace) -> DemoOptions:
    """The demo's options (its work directory still to be filled in)."""
    if _size("--ram", args.ram, "M") < MIN_RAM:
        raise UsageError(f"--ram: the demo guest needs at least {MIN_RAM // MiB} MiB")
    if args.port is not None and (args.transport != "tcp" or not 0 < args.port < 65536):
        raise UsageError("--port: a port number from 1 to 65535, with --transport tcp")
    return DemoOptions(
        workdir=Path(),
        machine=args.machine,
        transport=args.transport,
        image_format=args.image_format,
        ram=args.ram,
        max_bandwidth=_size("--max-bandwidth", args.max_bandwidth, "B"),
        port=args.port,
        guest=builtin_guest(args.machine),
    )


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:.1f} MiB"


def _progress_table(info: dict[str, Any]) -> Table:
    ram = info.get("ram", {})
    table = Table(title="migrating (the source's query-migrate)", show_header=False, min_width=56)
    table.add_row("status", str(info.get("status", "")))
    table.add_row("RAM transferred", _mib(ram.get("transferred", 0)))
    table.add_row("RAM remaining", f"{_mib(ram.get('remaining', 0))} of {_mib(ram.get('total'))}")
    table.add_row(
        "pages sent: zero / with data", f"{ram.get('duplicate', 0)} / {ram.get('normal', 0)}"
    )
    table.add_row("dirty pages rate", f"{ram.get('dirty-pages-rate', 0)} pages/s")
    table.add_row("rounds (dirty syncs)", str(ram.get("dirty-sync-count", 0)))
    table.add_row("throughput", f"{ram.get('mbps', 0):.1f} Mbit/s")
    table.add_row("elapsed", f"{info.get('total-time', 0)} ms")
    return table


_ACTIVITY = {True: "active", False: "inactive", None: "not reported"}


class ConsoleObserver:
    """Steps and guest lines as they come; the progress table live while migrating."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None

    def step(self, text: str) -> None:
        self.stop_live()
        self.console.print(f"[bold]*[/bold] {escape(text)}")

    def guest(self, side: str, line: str) -> None:
        console = self.live.console if self.live else self.console
        console.print(f"  [dim]{side} guest |[/dim] {escape(line)}")

    def progress(self, info: dict[str, Any]) -> None:
        if self.live is None:
            self.live = Live(console=self.console, refresh_per_second=8)
            self.live.start()
        self.live.update(_progress_table(info))

    def stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.line()

    def outcome(self, result: DemoResult, kept: bool) -> None:
        self.stop_live()
        info = result.migration
        ram = info.get("ram", {})
        table = Table(title="outcome", show_header=False)
        table.add_row(
            "the guest moved to",
            f"the destination, pid {result.destination_pid} "
            f"(run state after the hand-over: {result.destination_state or '-'})",
        )
        table.add_row("the source is", result.source_state or "-")
        table.add_row("migration", f"{info.get('status', '-')} over {escape(result.uri)}")
        table.add_row("downtime", f"{info.get('downtime', '-')} ms")
        table.add_row("total time", f"{info.get('total-time', '-')} ms")
        table.add_row(
            "RAM sent",
            f"{_mib(ram.get('transferred'))} ({ram.get('normal', 0)} pages with data, "
            f"{ram.get('duplicate', 0)} zero pages), dirty syncs: {ram.get('dirty-sync-count')}",
        )
        table.add_row("guest says (destination)", escape(result.guest_line or "(nothing)"))
        table.add_row(
            "serial output",
            "continuous across the hand-over: no line lost or doubled"
            if result.serial_continuous
            else "[red]progress lines lost, doubled or out of order[/red]",
        )
        table.add_row(
            "image activity (query-block)",
            "\n".join(f"{point}: {_ACTIVITY[active]}" for point, active in result.activity),
        )
        after = (result.source_writes_at_end or 0) - (result.source_writes or 0)
        table.add_row(
            "guest disk writes (query-blockstats)",
            f"source: {result.source_writes} ({after} after the hand-over); "
            f"destination: {result.destination_writes} (before the final check)",
        )
        where = escape(str(result.image))
        table.add_row("image", where if kept else f"{where} (removed at exit; --keep keeps it)")
        check = result.check_output
        if result.check_status == NO_CHECK:
            check += "\n(no metadata to check in this format: the guest checked the data)"
        table.add_row(f"arctern-img check (status {result.check_status})", escape(check))
        self.console.print(table)
        verdict = "[green]everything verified[/green]" if result.ok else "[red]NOT verified[/red]"
        self.console.print(f"[bold]{verdict}[/bold]")


@contextmanager
def _workdir(args: argparse.Namespace, console: Console) -> Iterator[Path]:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield args.workdir
    elif args.keep:
        path = Path(tempfile.mkdtemp(prefix="arctern-demo-"))
        try:
            yield path
        finally:
            console.print(f"kept {path}")
    else:
        with tempfile.TemporaryDirectory(prefix="arctern-demo-") as tmp:
            yield Path(tmp)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM (and SIGHUP): unwind like Ctrl-C so every child process is ended."""
    raise KeyboardInterrupt


def _main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    # qemu.qmp logs the errors it raises; each is reported once, as one line, from here.
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup stays nohup
            signal.signal(signum, _terminated)
    console = Console(highlight=False)
    observer = ConsoleObserver(console)
    options = _options(args)
    with _workdir(args, console) as workdir:
        try:
            result = MigrationDemo(replace(options, workdir=workdir), observer).run()
        finally:
            observer.stop_live()  # before any error line or "kept" is printed
        observer.outcome(result, kept=args.keep or args.workdir is not None)
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
