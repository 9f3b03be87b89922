"""Activation states: inactive nodes write nothing, activation order, events, *_all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arctern.block import activate_all, create_image, inactivate_all, open_backends, open_image
from arctern.errors import BlockError, InactiveError
from arctern.hookspecs import hookimpl

OLD = 1_500_000_000 * 10**9


@pytest.fixture
def chain(tmp_path, registry):
    """base.raw <- top.cowtest, each with some data."""
    base = str(tmp_path / "base.raw")
    top = str(tmp_path / "top.cowtest")
    create_image(base, "raw", 1 << 20, registry=registry)
    with open_image(base, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"B" * 8192)
    create_image(
        top,
        "cowtest",
        1 << 20,
        {"backing_file": "base.raw", "backing_fmt": "raw"},
        registry=registry,
    )
    with open_image(top, registry=registry) as t:
        t.pwrite(4096, b"T" * 100)
    return base, top


def snapshot(*paths):
    return [(Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in paths]


def test_inactive_chain_writes_nothing_even_on_close(chain, registry):
    for path in chain:
        os.utime(path, ns=(OLD, OLD))
    before = snapshot(*chain)
    backend = open_image(chain[1], active=False, registry=registry)
    assert backend.pread(4090, 12) == b"BBBBBBTTTTTT"
    with pytest.raises(InactiveError):
        backend.pwrite(0, b"x")
    backend.node.driver.dirty = True  # even a driver that thinks it has work to do...
    backend.flush()
    backend.close()
    assert snapshot(*chain) == before  # ...reaches nothing: close skipped the write-back


def test_node_refuses_driver_writes_while_inactive(chain, registry):
    """The file node is the last line of defence against a driver writing while inactive."""
    with open_image(chain[1], active=False, registry=registry) as backend:
        with pytest.raises(InactiveError):
            backend.node.file.pwrite(0, memoryview(b"x"))


def test_activate_runs_children_first_then_invalidate_cache(chain, registry):
    backend = open_image(chain[1], active=False, registry=registry)
    calls = backend.node.driver.calls
    calls.clear()
    backend.activate()
    assert calls == [("invalidate_cache", chain[1])]
    assert backend.node.file.active and backend.node.backing.active
    assert backend.node.backing.file.active
    backend.close()


def test_activation_order_over_the_graph(chain, registry, monkeypatch):
    order = []
    backend = open_image(chain[1], active=False, registry=registry)
    for node in (backend.node, backend.node.file, backend.node.backing, backend.node.backing.file):
        original = node.driver.invalidate_cache

        def record(node=node, original=original):
            order.append((node.format_name, Path(node.filename).name))
            original()

        monkeypatch.setattr(node.driver, "invalidate_cache", record)
    backend.activate()
    assert order == [
        ("file", "top.cowtest"),
        ("file", "base.raw"),
        ("raw", "base.raw"),
        ("cowtest", "top.cowtest"),
    ]
    backend.close()


def test_failed_invalidate_cache_leaves_everything_inactive(chain, registry, monkeypatch):
    backend = open_image(chain[1], active=False, registry=registry)

    def broken():
        raise BlockError("metadata unreadable")

    monkeypatch.setattr(backend.node.driver, "invalidate_cache", broken)
    with pytest.raises(BlockError, match="metadata unreadable"):
        backend.activate()
    assert not any(n.active for n in (backend.node, backend.node.file, backend.node.backing))
    monkeypatch.undo()
    backend.activate()  # retry works
    backend.pwrite(0, b"ok")
    backend.close()


def test_inactivate_writes_back_then_releases(chain, registry):
    backend = open_image(chain[1], registry=registry)
    backend.pwrite(20000, b"new block")  # allocates: the cached map is dirty
    calls = backend.node.driver.calls
    calls.clear()
    backend.inactivate()
    assert calls == [("inactivate", chain[1])]
    assert not backend.node.file.active and not backend.node.backing.active
    with open_image(chain[1], registry=registry) as other:  # no lock left, data on disk
        assert other.pread(20000, 9) == b"new block"
    calls.clear()
    backend.inactivate()  # idempotent: nothing called again
    assert calls == []
    backend.close()


def test_events_fire_per_node(chain, registry):
    seen = []

    class Observer:
        @hookimpl
        def arctern_image_activated(self, node):
            seen.append(("activated", node.format_name))

        @hookimpl
        def arctern_image_inactivated(self, node):
            seen.append(("inactivated", node.format_name))

    registry.config.enable["block"].add("observer")
    registry.register_plugin(Observer(), kind="block", name="observer")
    backend = open_image(chain[1], active=False, registry=registry)
    backend.activate()
    assert seen == [
        ("activated", "file"),
        ("activated", "file"),
        ("activated", "raw"),
        ("activated", "cowtest"),
    ]
    seen.clear()
    backend.inactivate()
    assert seen == [  # parents first: a parent writes back through its children
        ("inactivated", "cowtest"),
        ("inactivated", "file"),
        ("inactivated", "raw"),
        ("inactivated", "file"),
    ]
    backend.close()


def test_activate_all_and_inactivate_all(tmp_path, registry):
    paths = [str(tmp_path / f"d{i}.raw") for i in range(3)]
    for path in paths:
        create_image(path, "raw", 65536, registry=registry)
    backends = [open_image(p, fmt="raw", active=False, registry=registry) for p in paths]
    assert all(b in open_backends() for b in backends)
    activate_all()
    assert all(b.active for b in backends)
    for b in backends:
        b.pwrite(0, b"live")
    inactivate_all()
    assert not any(b.active for b in backends)
    inactivate_all()  # idempotent
    for b in backends:
        b.close()
    assert not any(b in open_backends() for b in backends)


def test_closed_backend_is_forgotten_and_close_is_idempotent(tmp_path, registry):
    path = str(tmp_path / "d.raw")
    create_image(path, "raw", 4096, registry=registry)
    backend = open_image(path, fmt="raw", registry=registry)
    backend.close()
    backend.close()
    assert backend not in open_backends()
    activate_all()  # a closed image is not touched
    with pytest.raises(BlockError, match="closed"):
        backend.node.activate()
