"""Fixtures for the qcow2 tests: the real qemu-img / qemu-io, and reading images both ways.

Test modules reach the helpers through the ``tools`` fixture (pytest's importlib
mode does not let test modules import this file).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from arctern.block import open_image

KiB, MiB = 1 << 10, 1 << 20

#: The image shapes the interop matrices run over: (compat, cluster size, refcount bits).
IMAGE_SHAPES = [
    ("1.1", 512, 16),
    ("1.1", 4 * KiB, 1),
    ("1.1", 4 * KiB, 8),
    ("1.1", 64 * KiB, 16),
    ("1.1", 2 * MiB, 64),
    ("0.10", 512, 16),
    ("0.10", 64 * KiB, 16),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests taking ``image_shape`` run once per entry of IMAGE_SHAPES."""
    if "image_shape" in metafunc.fixturenames:
        metafunc.parametrize(
            "image_shape", IMAGE_SHAPES, ids=[f"compat{c}-c{s}-r{b}" for c, s, b in IMAGE_SHAPES]
        )


class Tools:
    """qemu-img/qemu-io wrappers and image helpers, bound to a test's tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.qemu_img_bin = shutil.which("qemu-img")
        self.qemu_io_bin = shutil.which("qemu-io")
        if not self.qemu_img_bin or not self.qemu_io_bin:
            pytest.fail("qemu-img and qemu-io are needed (Debian package qemu-utils)")

    def path(self, name: str) -> str:
        return str(self.tmp / name)

    @staticmethod
    def run(*args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        """Run a command; fail the test unless its exit code is in ``ok``."""
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if proc.returncode not in ok:
            pytest.fail(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr or proc.stdout}")
        return proc

    def qemu_img(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        return self.run(self.qemu_img_bin, *args, ok=ok)

    def qemu_create(
        self,
        path: str,
        size: int | str,
        options: str = "",
        *,
        fmt: str = "qcow2",
        backing: str | None = None,
        backing_fmt: str = "qcow2",
    ) -> None:
        """``qemu-img create`` with ``-o options`` and ``-b backing -F backing_fmt``."""
        args = ["create", "-q", "-f", fmt]
        if options:
            args += ["-o", options]
        if backing:
            args += ["-b", backing, "-F", backing_fmt]
        self.qemu_img(*args, path, str(size))

    def qemu_io(self, path: str, *commands: str, fmt: str = "qcow2") -> None:
        args = [self.qemu_io_bin, "-f", fmt]
        for command in commands:
            args += ["-c", command]
        self.run(*args, path)

    def raw_by_qemu(self, path: str) -> bytes:
        """The image's guest content as ``qemu-img convert -O raw`` sees it."""
        out = self.tmp / f"{Path(path).name}.qemu.raw"
        self.qemu_img("convert", "-O", "raw", path, str(out))
        return out.read_bytes()

    @staticmethod
    def read_all(path: str, **kwargs) -> bytes:
        """The image's guest content as Arctern reads it."""
        with open_image(path, fmt="qcow2", read_only=True, **kwargs) as image:
            return image.pread(0, image.length)

    def assert_qemu_check_clean(self, path: str) -> None:
        proc = self.qemu_img("check", path, ok=(0, 2, 3))
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def assert_qemu_compare(self, path: str, expected: bytes) -> None:
        raw = self.tmp / f"{Path(path).name}.expected.raw"
        raw.write_bytes(expected)
        proc = self.qemu_img("compare", "-f", "qcow2", "-F", "raw", path, str(raw), ok=(0, 1))
        assert proc.returncode == 0, proc.stdout


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    return Tools(tmp_path)


def pattern(seed: int, length: int) -> bytes:
    return random.Random(seed).randbytes(length)


def discard_effect(offset: int, length: int, size: int, cluster_size: int) -> tuple[int, int]:
    """The part of a discard that reads as zeroes afterwards: whole clusters only."""
    end = offset + length
    if end >= size:
        end = -(-end // cluster_size) * cluster_size
    start = -(-offset // cluster_size) * cluster_size
    return start, min(size, end // cluster_size * cluster_size)


@pytest.fixture
def random_io():
    """``random_io(image, expected, seed, count, cluster_size)``: random requests, mirrored.

    Writes of awkward sizes (partial clusters), write-zeroes and discards; the
    image must be opened with discard="unmap" and have no backing file.
    """

    def apply(image, expected: bytearray, seed: int, count: int, cluster_size: int) -> None:
        rng = random.Random(seed)
        size = len(expected)
        for i in range(count):
            kind = rng.choices(("write", "zero", "discard"), (6, 1, 1))[0]
            length = min(
                size,
                rng.choice(
                    (1, 511, cluster_size, cluster_size + 700, 3 * cluster_size + 5, 70_000)
                ),
            )
            offset = rng.randrange(0, size - length + 1)
            if rng.random() < 0.3:
                offset -= offset % cluster_size
            if kind == "write":
                data = pattern(seed * 1000 + i, length)
                image.pwrite(offset, data)
                expected[offset : offset + length] = data
            elif kind == "zero":
                image.pwrite_zeroes(offset, length)
                expected[offset : offset + length] = bytes(length)
            else:
                image.pdiscard(offset, length)
                start, stop = discard_effect(offset, length, size, cluster_size)
                if stop > start:
                    expected[start:stop] = bytes(stop - start)

    return apply
