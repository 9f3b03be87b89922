"""pytest plugin of the Arctern conformance kit (loaded through the pytest11 entry point).

``pytest --arctern-block-driver NAME`` (repeatable) runs the block-driver
conformance suite against the installed driver NAME: alone when no test paths
are given, next to them otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

OPTION = "--arctern-block-driver"
SUITE = Path(__file__).with_name("block_suite.py")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("arctern", "Arctern conformance kit")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="NAME",
        dest="arctern_block_drivers",
        help="run the block-driver conformance suite against the installed driver NAME",
    )


_requested: list[str] = []


def requested_block_drivers() -> list[str]:
    """The driver names given with --arctern-block-driver in this pytest run."""
    return list(_requested)


def pytest_configure(config: pytest.Config) -> None:
    _requested[:] = config.getoption("arctern_block_drivers")
    if not _requested:
        return
    suite = str(SUITE)
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        config.args[:] = [suite]  # no paths given: run the suite alone
    elif suite not in config.args:
        config.args.append(suite)


@pytest.fixture
def arctern_block_registry():
    """The plugin registry the block conformance suite opens images with.

    Default: the process-wide registry (every installed, enabled plugin).
    Override this fixture in your conftest.py to test with a hand-built one.
    """
    from arctern.plugins import default_registry

    return default_registry()
