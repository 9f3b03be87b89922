"""arctern-img: qemu-img for Arctern images (create, info, check, commit, convert, map,
compare, amend, measure, rebase, resize, snapshot, bench), with qemu-img's syntax, output
and exit codes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence

from arctern.errors import ArcternError, UsageError

from .common import run_cli
from .img_common import HELP_HINT, discover_block_plugins_only

log = logging.getLogger(__name__)

#: Subcommand -> module (``img_NAME``) defining ``cmd_NAME``; imported only when run.
COMMANDS = (
    "amend",
    "bench",
    "check",
    "commit",
    "compare",
    "convert",
    "create",
    "info",
    "map",
    "measure",
    "rebase",
    "resize",
    "snapshot",
)

USAGE = """usage: arctern-img [standard options] command [command options]
Arctern disk image utility (qemu-img's commands and options)

Command syntax:
  amend [-p] [-q] [-f fmt] [-t cache] -o options filename
  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-n] [--no-drain]
        [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-U]
        [-w] filename
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename
  commit [-q] [-f fmt] [-t cache] [-b base] [-d] [-p] [-r rate_limit] filename
  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2
  convert [-c] [-C] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt]
        [-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-U]
        filename [filename2 [...]] output_filename
  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--output=ofmt] [--start-offset=OFFSET] [--max-length=LEN] [-U] filename
  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] [-U] filename]
  rebase [-f fmt] [-t cache] [-T src_cache] [-p] [-q] [-u] [-U] -b backing_file
        [-F backing_fmt] filename
  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size
  snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot |
        -d snapshot] filename

Sizes take the suffixes k, M, G, T, P, E (powers of 1024).
"""


def dispatch(argv: Sequence[str]) -> int:
    if not argv:
        raise UsageError(f"Not enough arguments; {HELP_HINT}")
    command, *args = argv
    if command in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if command in ("-V", "--version"):
        from importlib.metadata import version

        print(f"arctern-img version {version('arctern')}")
        return 0
    if command not in COMMANDS:
        raise UsageError(f"Command not found: {command}; {HELP_HINT}")
    module = importlib.import_module(f"{__package__}.img_{command}")
    return guarded(getattr(module, f"cmd_{command}"), args)


def guarded(body: Callable[[Sequence[str]], int], args: Sequence[str]) -> int:
    """Run a subcommand; a hostile image must never show the user a traceback.

    A driver bug that lets a plain Python exception escape (struct.error on a
    truncated table, say) still becomes one error line; ARCTERN_DEBUG=1 logs
    the traceback.
    """
    try:
        return body(args)
    except (ArcternError, KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:
        raise ArcternError(
            f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
        ) from exc
    except MemoryError as exc:
        raise ArcternError("out of memory (the image asks for an absurd allocation)") from exc
    except Exception as exc:  # noqa: BLE001 - the last line of defence, see docstring
        log.debug("internal error", exc_info=True)
        raise ArcternError(f"internal error: {type(exc).__name__}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    standalone = argv is None  # run as a program, not called from Python

    def body(args: Sequence[str]) -> int:
        if standalone:
            discover_block_plugins_only()
        return dispatch(args)

    return run_cli("arctern-img", body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
