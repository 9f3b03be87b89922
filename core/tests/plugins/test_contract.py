"""The contract machinery: required hooks, in-process registration, event isolation."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from arctern import hookspecs
from arctern.block.driver import BlockDriver
from arctern.config import BuildConfig
from arctern.contract import missing_hooks, required_hooks
from arctern.errors import NotFoundError, PluginRefused
from arctern.hookspecs import hookimpl
from arctern.plugins import Registry

REFERENCE = Path(__file__).parents[3] / "docs" / "reference" / "hooks.md"


class Complete(BlockDriver):
    name = "complete"

    def open(self, options):
        pass

    def close(self):
        pass

    def getlength(self):
        return 0

    def pread(self, offset, buf):
        pass

    def pwrite(self, offset, data):
        pass

    def flush(self):
        pass

    def invalidate_cache(self):
        pass  # caches nothing


class Forgetful(Complete):
    """Inherits everything, but a subclass of a complete driver is complete too."""

    name = "forgetful"


def test_block_driver_requires_invalidate_cache():
    assert "invalidate_cache" in required_hooks(BlockDriver)
    assert missing_hooks(Complete, BlockDriver) == []
    assert missing_hooks(Forgetful, BlockDriver) == []

    class Lazy(BlockDriver):
        name = "lazy"

    assert set(missing_hooks(Lazy, BlockDriver)) == set(required_hooks(BlockDriver))


class _DriverPlugin:
    def __init__(self, *classes):
        self.classes = classes

    @hookimpl
    def arctern_block_drivers(self):
        return list(self.classes)


def _registry(**kwargs) -> Registry:
    return Registry(BuildConfig(), **kwargs)


def test_in_process_registration_and_lookup():
    registry = _registry()
    record = registry.register_plugin(_DriverPlugin(Complete), kind="block", name="complete")
    assert record.status == "enabled"
    assert registry.block_driver("complete") is Complete
    with pytest.raises(
        NotFoundError, match=r"unknown block driver 'qcow3' \(available: complete\)"
    ):
        registry.block_driver("qcow3")


def test_a_refused_class_refuses_the_whole_plugin():
    class NoInvalidate(BlockDriver):
        name = "noinv"

        def open(self, options):
            pass

    registry = _registry()
    record = registry.register_plugin(
        _DriverPlugin(Complete, NoInvalidate), kind="block", name="mixed", distribution="mixed"
    )
    assert record.status == "refused"
    assert record.reason.startswith("arctern: block driver 'noinv' (mixed) refused: missing")
    assert "complete" not in registry.block_drivers
    with pytest.raises(PluginRefused):
        _registry(strict=True).register_plugin(
            _DriverPlugin(NoInvalidate), kind="block", name="strict"
        )


def test_a_class_of_the_wrong_contract_is_refused():
    class NotADriver:
        name = "impostor"

    record = _registry().register_plugin(_DriverPlugin(NotADriver), kind="block", name="x")
    assert record.status == "refused"
    assert "is not a subclass of arctern.block.driver.BlockDriver" in record.reason


def test_an_observer_that_raises_is_logged_not_propagated(caplog):
    seen = []

    class Observer:
        @hookimpl
        def arctern_migration_state_changed(self, status):
            seen.append(status)

    class Broken:
        @hookimpl
        def arctern_migration_state_changed(self, machine):
            raise RuntimeError("observer bug")

    registry = _registry()
    registry.register_plugin(Observer(), kind="migration", name="observer")
    registry.register_plugin(Broken(), kind="migration", name="broken")
    with caplog.at_level(logging.ERROR):
        registry.notify("arctern_migration_state_changed", machine=None, status="active")
    assert seen == ["active"]
    assert "observer bug" in caplog.text


def test_every_hook_is_in_the_reference():
    text = REFERENCE.read_text()
    declared = {name for name in vars(hookspecs) if name.startswith("arctern_")}
    documented = set(re.findall(r"`(arctern_\w+)\(", text))
    assert declared == documented
