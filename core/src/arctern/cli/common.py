"""What every Arctern command-line tool shares: one error line, never a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from arctern.errors import USER_WARNINGS_LOGGER, ArcternError


def run_cli(
    prog: str, body: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None
) -> int:
    """Run ``body(argv)``; turn an ArcternError into ``prog: message`` on stderr and exit 1.

    Set ``ARCTERN_DEBUG=1`` to see the traceback of an ArcternError too.
    """
    logging.basicConfig(
        level=logging.DEBUG if os.environ.get("ARCTERN_DEBUG") else logging.ERROR,
        format=f"{prog}: %(message)s",
    )
    _show_user_warnings()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        status = body(args)
    except ArcternError as exc:
        if os.environ.get("ARCTERN_DEBUG"):
            raise
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return status or 0


def _show_user_warnings() -> None:
    """Print the warnings meant for the user as QEMU's tools do (``WARNING: ...``)."""
    logger = logging.getLogger(USER_WARNINGS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("WARNING: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
