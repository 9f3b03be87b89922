"""The conformance kit itself: it passes a good overlay driver and catches broken ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

from arctern.errors import InactiveError
from arctern.testing.block import BackingChainConformance, BlockDriverConformance

#: How a test of the suite fails: a plain assert, or pytest.fail with a clearer message.
KIT_FAILURE = (AssertionError, pytest.fail.Exception)


@pytest.fixture
def arctern_block_registry(make_registry):
    return make_registry()


class TestCowtestConformance(BackingChainConformance):
    """A format with cached metadata and a header passes the whole suite."""

    driver_name = "cowtest"


def run_kit_test(name, driver_class, tmp_path, make_registry):
    """Run one test of the suite against ``driver_class``, outside pytest's collection."""

    class Kit(BlockDriverConformance):
        driver_name = driver_class.name

    kit = Kit()
    kit.path = str(tmp_path / f"image.{driver_class.name}")
    kit.registry = make_registry(driver_class)
    getattr(kit, name)()


def test_kit_catches_a_driver_that_keeps_stale_metadata(cowtest_class, tmp_path, make_registry):
    class Stale(cowtest_class):
        name = "stale"

        def invalidate_cache(self):
            pass  # forgets to re-read the map and the size

    with pytest.raises(KIT_FAILURE):
        run_kit_test(
            "test_activate_picks_up_changes_made_through_another_handle",
            Stale,
            tmp_path,
            make_registry,
        )


def test_kit_catches_a_driver_that_writes_while_inactive(cowtest_class, tmp_path, make_registry):
    class Scribbler(cowtest_class):
        name = "scribbler"

        def open(self, options):
            super().open(options)
            self.node.file.pwrite(500, memoryview(b"opened"))  # a "dirty bit", always

    with pytest.raises(InactiveError):
        run_kit_test("test_inactive_open_writes_nothing", Scribbler, tmp_path, make_registry)


def test_kit_catches_a_driver_that_does_not_write_back_on_inactivate(
    cowtest_class, tmp_path, make_registry
):
    class Forgetful(cowtest_class):
        name = "forgetful"

        def inactivate(self):
            self.node.file.flush()  # but the cached map stays dirty in memory

    with pytest.raises(KIT_FAILURE):
        run_kit_test("test_inactivate_then_activate_round_trip", Forgetful, tmp_path, make_registry)


def test_command_line_option_runs_the_suite_against_a_named_driver(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--arctern-block-driver",
            "raw",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = len([n for n in dir(BlockDriverConformance) if n.startswith("test_")])
    assert f"{count} passed" in result.stdout
