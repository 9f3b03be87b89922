"""The block-driver suite run by ``pytest --arctern-block-driver NAME`` (one class per NAME)."""

from __future__ import annotations

import pytest

from arctern.testing.block import BlockDriverConformance


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "arctern_block_driver" in metafunc.fixturenames:
        names = metafunc.config.getoption("arctern_block_drivers")
        metafunc.parametrize("arctern_block_driver", names, scope="class")


class TestBlockDriver(BlockDriverConformance):
    """The suite, with ``driver_name`` taken from the command line."""

    driver_name = "(from --arctern-block-driver)"

    @pytest.fixture(autouse=True)
    def _named_driver(self, arctern_block_driver: str, tmp_path) -> None:
        self.driver_name = arctern_block_driver
        self.path = str(tmp_path / f"image.{arctern_block_driver}")
