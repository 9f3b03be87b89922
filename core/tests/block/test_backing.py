"""Backing chains: relative names, read-only backing nodes, depth limit, loops."""

from __future__ import annotations

import os

import pytest

from arctern.block import create_image, image, open_image
from arctern.errors import BlockError, ImageFormatError, ReadOnlyError


def make_overlay(registry, path, backing, backing_fmt="raw", size=1 << 20):
    options = {"backing_file": backing}
    if backing_fmt:
        options["backing_fmt"] = backing_fmt
    create_image(path, "cowtest", size, options, registry=registry)


@pytest.fixture
def base(tmp_path, registry):
    path = str(tmp_path / "base.raw")
    create_image(path, "raw", 1 << 20, registry=registry)
    with open_image(path, fmt="raw", registry=registry) as b:
        b.pwrite(0, b"base" * 4096)
    return path


def test_overlay_reads_through_to_raw_backing_and_copies_on_write(tmp_path, registry, base):
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, top, "base.raw")
    before = open(base, "rb").read()
    with open_image(top, registry=registry) as t:
        assert t.pread(0, 8) == b"basebase"
        t.pwrite(2, b"XY")
        assert t.pread(0, 8) == b"baXYbase"
        assert t.node.backing.read_only
        assert t.node.backing.filename == os.path.join(str(tmp_path), "base.raw")
        with pytest.raises(ReadOnlyError):
            t.node.backing.pwrite(0, memoryview(b"no"))
    assert open(base, "rb").read() == before


def test_backing_name_is_relative_to_the_image_directory(tmp_path, registry, base, monkeypatch):
    sub = tmp_path / "images"
    sub.mkdir()
    os.rename(base, sub / "base.raw")
    top = str(sub / "top.cowtest")
    make_overlay(registry, top, "base.raw")
    monkeypatch.chdir("/")
    with open_image(top, registry=registry) as t:
        assert t.pread(0, 4) == b"base"


def test_absolute_backing_name(tmp_path, registry, base):
    top = str(tmp_path / "elsewhere.cowtest")
    make_overlay(registry, top, base)
    with open_image(top, registry=registry) as t:
        assert t.node.backing.filename == base


def test_chain_of_three_with_probed_backing_format(tmp_path, registry, base):
    mid = str(tmp_path / "mid.cowtest")
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, mid, "base.raw")
    with open_image(mid, registry=registry) as m:
        m.pwrite(4, b"MID!")
    make_overlay(registry, top, "mid.cowtest", backing_fmt=None)
    with open_image(top, registry=registry) as t:
        assert [n.format_name for n in t.node.iter_chain()] == ["cowtest", "cowtest", "raw"]
        assert t.pread(0, 12) == b"baseMID!base"


def test_backing_is_locked_read_only(tmp_path, registry, base, qemu_io_read):
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, top, "base.raw")
    with open_image(top, registry=registry):
        writer = qemu_io_read(base, "raw")
        assert writer.returncode == 1
        assert 'Failed to get "write" lock' in writer.stderr
        reader = qemu_io_read(base, "raw", "-r")
        assert reader.returncode == 0


def test_backing_false_leaves_the_chain_closed(tmp_path, registry):
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, top, "missing.raw")
    with open_image(top, backing=False, registry=registry) as t:
        assert t.node.backing is None
        assert t.node.driver.backing_filename == "missing.raw"


def test_missing_backing_file_names_both_files(tmp_path, registry):
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, top, "missing.raw")
    with pytest.raises(BlockError) as info:
        open_image(top, registry=registry)
    message = str(info.value)
    assert "Could not open backing file of" in message and top in message
    assert "missing.raw': No such file or directory" in message
    # nothing was left open: the image can be opened for writing right away
    open_image(top, backing=False, registry=registry).close()


def test_backing_loop_is_refused(tmp_path, registry):
    a = str(tmp_path / "a.cowtest")
    b = str(tmp_path / "b.cowtest")
    make_overlay(registry, a, "b.cowtest", "cowtest")
    make_overlay(registry, b, "a.cowtest", "cowtest")
    with pytest.raises(ImageFormatError, match="Backing file loop"):
        open_image(a, registry=registry)
    self_loop = str(tmp_path / "self.cowtest")
    make_overlay(registry, self_loop, "self.cowtest", "cowtest")
    with pytest.raises(ImageFormatError, match="Backing file loop"):
        open_image(self_loop, read_only=True, registry=registry)


def test_loop_through_a_different_name_is_found(tmp_path, registry):
    a = str(tmp_path / "a.cowtest")
    make_overlay(registry, a, "link.cowtest", "cowtest")
    os.symlink(a, tmp_path / "link.cowtest")
    with pytest.raises(ImageFormatError, match="Backing file loop"):
        open_image(a, registry=registry)


def test_chain_depth_limit(tmp_path, registry, base, monkeypatch):
    monkeypatch.setattr(image, "MAX_CHAIN_LENGTH", 4)
    previous = "base.raw"
    for i in range(4):
        path = str(tmp_path / f"l{i}.cowtest")
        make_overlay(registry, path, previous, "raw" if i == 0 else "cowtest")
        previous = os.path.basename(path)
    with open_image(str(tmp_path / "l2.cowtest"), registry=registry) as ok:
        assert len(list(ok.node.iter_chain())) == 4
    with pytest.raises(ImageFormatError, match="longer than 4 images"):
        open_image(str(tmp_path / "l3.cowtest"), registry=registry)


def test_backing_options_and_inactive_chain(tmp_path, registry, base, lock_bytes):
    top = str(tmp_path / "top.cowtest")
    make_overlay(registry, top, "base.raw")
    with open_image(
        top, active=False, options={"backing.file.locking": "off"}, registry=registry
    ) as t:
        assert not t.node.backing.active
        t.activate()
        assert t.node.backing.active
        assert lock_bytes(base) == []  # locking=off reached the backing file node
        assert lock_bytes(top) == [100, 101, 103, 201, 203]
