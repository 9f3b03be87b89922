"""The block-driver conformance suite: what Arctern relies on from every format driver.

Subclass :class:`BlockDriverConformance` in a test module of your driver's
distribution, name the class ``Test...`` and set ``driver_name``::

    from arctern.testing.block import BlockDriverConformance

    class TestMyFormat(BlockDriverConformance):
        driver_name = "myformat"
        create_options = {"cluster_size": 4096}

pytest then runs every ``test_*`` method below against your driver, through
the public block layer (:func:`arctern.block.open_image`), exactly as devices,
tools and the migration hand-over use it. Or run the suite against any
installed driver with ``pytest --arctern-block-driver NAME``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest

from arctern.block import BlockBackend, create_image, open_image
from arctern.errors import InactiveError, OutOfRangeError, ReadOnlyError

MiB = 1 << 20
#: An mtime far in the past: any write to the file moves it to "now".
OLD_MTIME_NS = 1_000_000_000 * 1_500_000_000


def pattern(seed: int, length: int) -> bytes:
    """``length`` bytes that differ from one ``seed`` to the next and are never all zero."""
    return random.Random(seed).randbytes(length).replace(b"\0", b"\x5a")


class BlockDriverConformance:
    """Base class of the conformance suite; subclasses set ``driver_name``."""

    #: The format driver under test (``-f`` name).
    driver_name: ClassVar[str] = ""
    #: Create options for every image the suite creates (``-o``).
    create_options: ClassVar[dict[str, Any]] = {}
    #: Open options for every open (e.g. a small cache to exercise eviction).
    open_options: ClassVar[dict[str, Any]] = {}
    #: Virtual size of the test images: whole 512-byte sectors (formats such as qcow2
    #: round up to them) but no multiple of 1 KiB, so the last cluster is partial.
    image_size: ClassVar[int] = 3 * MiB + 5 * 512
    #: Whether the driver can grow an image (exercised by the invalidate_cache test).
    supports_resize: ClassVar[bool] = True

    # --- helpers ----------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _arctern_image(self, tmp_path: Path, arctern_block_registry) -> None:
        if not self.driver_name:
            pytest.fail(f"{type(self).__name__} must set driver_name")
        self.path = str(tmp_path / f"image.{self.driver_name}")
        self.registry = arctern_block_registry

    def create(self, size: int | None = None, path: str | None = None) -> str:
        path = path or self.path
        size = self.image_size if size is None else size
        create_image(
            path, self.driver_name, size, dict(self.create_options), registry=self.registry
        )
        return path

    def open(self, path: str | None = None, **kwargs: Any) -> BlockBackend:
        kwargs.setdefault("options", dict(self.open_options))
        return open_image(path or self.path, fmt=self.driver_name, registry=self.registry, **kwargs)

    def write_some(
        self, backend: BlockBackend, seed: int, expected: bytearray | None = None
    ) -> bytearray:
        """Write patterns of awkward sizes at random places of ``backend``.

        Returns ``expected`` (or a new zero-filled buffer) updated with what was written.
        """
        if expected is None:
            expected = bytearray(backend.length)
        rng = random.Random(seed)
        for i in range(12):
            length = rng.choice((1, 511, 512, 4096, 65536 + 3, 200_000))
            offset = rng.randrange(0, backend.length - length)
            data = pattern(seed * 100 + i, length)
            backend.pwrite(offset, data)
            expected[offset : offset + length] = data
        return expected

    def assert_content(self, backend: BlockBackend, expected: bytes | bytearray) -> None:
        actual = backend.pread(0, backend.length)
        if actual != expected:
            first = next(i for i, (a, b) in enumerate(zip(actual, expected, strict=True)) if a != b)
            pytest.fail(
                f"content differs first at offset {first} "
                f"(read {actual[first]:#x}, expected {expected[first]:#x})"
            )

    def assert_every_write_refused(self, backend: BlockBackend, error: type[Exception]) -> None:
        """Writes, write-zeroes, discards and resizes all raise ``error``."""
        for call in (
            lambda: backend.pwrite(0, b"x"),
            lambda: backend.pwrite_zeroes(0, 512),
            lambda: backend.pdiscard(0, 512),
            lambda: backend.truncate(self.image_size * 2),
        ):
            with pytest.raises(error):
                call()

    def file_state(self) -> tuple[bytes, int, int]:
        st = os.stat(self.path)
        return Path(self.path).read_bytes(), st.st_size, st.st_mtime_ns

    # --- creation ------------------------------------------------------------

    def test_create_gives_an_image_of_the_size_that_reads_zeroes(self):
        self.create()
        with self.open() as image:
            assert image.length == self.image_size
            assert image.pread(0, image.length) == bytes(self.image_size)

    def test_create_empty_image(self):
        self.create(size=0)
        with self.open() as image:
            assert image.length == 0
            assert image.pread(0, 0) == b""

    # --- data ------------------------------------------------------------------

    def test_aligned_writes_read_back(self):
        self.create()
        expected = bytearray(self.image_size)
        with self.open() as image:
            for i, (offset, length) in enumerate(
                [(0, 4096), (65536, 65536), (MiB, 2 * 65536), (2 * MiB - 512, 1024)]
            ):
                data = pattern(i, length)
                image.pwrite(offset, data)
                expected[offset : offset + length] = data
            self.assert_content(image, expected)

    def test_unaligned_writes_read_back(self):
        self.create()
        with self.open() as image:
            expected = self.write_some(image, seed=1)
            self.write_some(image, seed=2, expected=expected)
            self.assert_content(image, expected)
            rng = random.Random(3)
            for _ in range(50):
                offset = rng.randrange(0, image.length)
                length = rng.randrange(0, min(70_000, image.length - offset) + 1)
                assert image.pread(offset, length) == bytes(expected[offset : offset + length])

    def test_last_partial_cluster(self):
        self.create()
        size = self.image_size
        with self.open() as image:
            tail = pattern(7, 3000)
            image.pwrite(size - len(tail), tail)
            image.pwrite(size - 1, b"\x01")
            assert image.pread(size - len(tail), len(tail)) == tail[:-1] + b"\x01"
            assert image.pread(size - 1, 1) == b"\x01"
            with pytest.raises(OutOfRangeError):
                image.pwrite(size - 1, b"ab")
        with self.open() as image:
            assert image.pread(size - len(tail), len(tail)) == tail[:-1] + b"\x01"
            assert image.pread(0, size - len(tail)) == bytes(size - len(tail))

    def test_writes_persist_across_close_and_reopen(self):
        self.create()
        with self.open() as image:
            expected = self.write_some(image, seed=4)
        with self.open(read_only=True) as image:
            self.assert_content(image, expected)

    def test_flush_makes_data_visible_to_another_handle(self):
        self.create()
        with self.open() as writer:
            expected = self.write_some(writer, seed=5)
            writer.flush()
            with self.open(read_only=True, force_share=True) as reader:
                self.assert_content(reader, expected)

    def test_write_zeroes_reads_back_zeroes(self):
        self.create()
        with self.open() as image:
            image.pwrite(0, pattern(8, 300_000))
            image.pwrite_zeroes(1000, 200_000)
            image.pwrite_zeroes(250_000, 10_000, may_unmap=True)
            data = image.pread(0, 300_000)
            assert data[1000:201_000] == bytes(200_000)
            assert data[250_000:260_000] == bytes(10_000)
            assert data[:1000] == pattern(8, 300_000)[:1000]
            assert data[201_000:250_000] == pattern(8, 300_000)[201_000:250_000]

    def test_discard_keeps_the_rest_intact(self):
        self.create()
        with self.open(discard="unmap") as image:
            image.pwrite(0, pattern(9, 4 * 65536))
            image.pdiscard(65536, 65536)
            assert image.pread(0, 65536) == pattern(9, 4 * 65536)[:65536]
            assert image.pread(2 * 65536, 2 * 65536) == pattern(9, 4 * 65536)[2 * 65536 :]

    # --- errors --------------------------------------------------------------

    def test_out_of_range_access_is_refused(self):
        self.create()
        size = self.image_size
        with self.open() as image:
            for call in (
                lambda: image.pread(size, 1),
                lambda: image.pread(size - 10, 11),
                lambda: image.pread(-1, 1),
                lambda: image.pwrite(size, b"x"),
                lambda: image.pwrite(-512, bytes(512)),
                lambda: image.pwrite_zeroes(size - 1, 2),
                lambda: image.pdiscard(size, 512),
            ):
                with pytest.raises(OutOfRangeError):
                    call()
            assert image.length == size
            image.pwrite(0, b"still usable")
            assert image.pread(0, 12) == b"still usable"

    def test_read_only_open_refuses_writes(self):
        self.create()
        before = self.file_state()[0]
        with self.open(read_only=True) as image:
            self.assert_every_write_refused(image, ReadOnlyError)
            image.flush()
        assert self.file_state()[0] == before

    # --- activation ------------------------------------------------------------

    def test_inactive_open_writes_nothing(self):
        self.create()
        with self.open() as image:
            expected = self.write_some(image, seed=10)
        os.utime(self.path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
        before = self.file_state()
        image = self.open(active=False)
        assert not image.active
        self.assert_content(image, expected)
        self.assert_every_write_refused(image, InactiveError)
        image.flush()
        image.inactivate()
        image.close()
        assert self.file_state() == before, "an inactive image changed its file"

    def test_inactive_open_holds_no_lock(self):
        self.create()
        with self.open(active=False) as inactive:
            with self.open() as writer:  # would raise ImageLockError if a lock were held
                writer.pwrite(0, b"owner")
            with self.open(read_only=True) as reader:
                assert reader.pread(0, 5) == b"owner"
            assert not inactive.active

    def test_activate_picks_up_changes_made_through_another_handle(self):
        self.create()
        with self.open() as image:
            expected = self.write_some(image, seed=11)
        stale = self.open(active=False)
        stale.pread(0, stale.length)  # fill whatever the driver caches
        with self.open() as writer:
            self.write_some(writer, seed=12, expected=expected)
            if self.supports_resize:
                writer.truncate(self.image_size + MiB)
                writer.pwrite(self.image_size + 100, b"grown")
                expected += bytes(MiB)
                expected[self.image_size + 100 : self.image_size + 105] = b"grown"
        stale.activate()
        assert stale.active
        assert stale.length == len(expected)
        self.assert_content(stale, expected)
        stale.pwrite(0, b"mine now")
        stale.close()
        with self.open(read_only=True) as image:
            assert image.pread(0, 8) == b"mine now"

    def test_inactivate_then_activate_round_trip(self):
        self.create()
        image = self.open()
        expected = self.write_some(image, seed=13)
        image.inactivate()
        image.inactivate()  # idempotent
        assert not image.active
        with pytest.raises(InactiveError):
            image.pwrite(0, b"x")
        with self.open() as other:  # the locks were released, everything was written back
            self.assert_content(other, expected)
            other.pwrite(4096, b"other process")
            expected[4096:4109] = b"other process"
        image.activate()
        image.activate()  # idempotent
        self.assert_content(image, expected)
        image.pwrite(8192, b"back")
        expected[8192:8196] = b"back"
        image.close()
        image.close()  # harmless
        with self.open(read_only=True) as image:
            self.assert_content(image, expected)


class BackingChainConformance(BlockDriverConformance):
    """The suite plus backing-file tests, for formats with backing files (like qcow2).

    The driver must accept the create options ``backing_file`` and ``backing_fmt``.
    """

    def make_overlay(self) -> tuple[str, bytes]:
        """A raw base image with data and an overlay of it; returns (base path, base data)."""
        base = str(Path(self.path).with_name("base.raw"))
        create_image(base, "raw", self.image_size, registry=self.registry)
        data = pattern(20, self.image_size)
        with open_image(base, fmt="raw", registry=self.registry) as backend:
            backend.pwrite(0, data)
        options = {**self.create_options, "backing_file": "base.raw", "backing_fmt": "raw"}
        create_image(self.path, self.driver_name, self.image_size, options, registry=self.registry)
        return base, data

    def test_overlay_reads_through_and_copies_on_write(self):
        base, data = self.make_overlay()
        expected = bytearray(data)
        with self.open() as overlay:
            assert overlay.node.backing is not None and overlay.node.backing.read_only
            self.assert_content(overlay, expected)
            self.write_some(overlay, seed=21, expected=expected)
            self.assert_content(overlay, expected)
        with self.open(read_only=True) as overlay:
            self.assert_content(overlay, expected)
        assert Path(base).read_bytes() == data, "writing the overlay changed its backing file"

    def test_inactive_overlay_writes_nothing_to_either_file(self):
        base, data = self.make_overlay()
        for path in (base, self.path):
            os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
        before = [(Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in (base, self.path)]
        overlay = self.open(active=False)
        self.assert_content(overlay, data)
        self.assert_every_write_refused(overlay, InactiveError)
        overlay.close()
        after = [(Path(p).read_bytes(), os.stat(p).st_mtime_ns) for p in (base, self.path)]
        assert after == before, "an inactive overlay changed a file"
