"""The MigrationTransport contract: both sides are required, the registry enforces it."""

from __future__ import annotations

import pytest

from arctern.config import BuildConfig
from arctern.contract import required_hooks
from arctern.errors import PluginRefused, TransportError
from arctern.hookspecs import hookimpl
from arctern.migration.transport import MigrationTransport, split_uri


class SendOnly(MigrationTransport):
    """A transport that can send a guest away but never receive one."""

    name = "sendonly"

    def connect(self, uri):
        raise TransportError("not used")


class SendOnlyPlugin:
    @hookimpl
    def arctern_migration_transports(self):
        return [SendOnly]


def test_connect_and_listen_are_both_required():
    assert required_hooks(MigrationTransport) == ["connect", "listen"]


def test_registry_refuses_a_transport_without_an_incoming_side():
    from arctern.plugins import Registry

    registry = Registry(BuildConfig(), strict=True)
    with pytest.raises(PluginRefused, match="'sendonly'.*refused: missing required hook listen"):
        registry.register_plugin(SendOnlyPlugin(), kind="migration", name="sendonly")
    assert "sendonly" not in registry.transports


@pytest.mark.parametrize("uri", ["tcp", "", ":x", "tcp:"])
def test_split_uri_needs_scheme_and_address(uri):
    with pytest.raises(TransportError, match="bad migration URI"):
        split_uri(uri)
