"""arctern-img bench's flushes: drained between batches, or issued among requests (--no-drain)."""

from __future__ import annotations

import threading
import time

from arctern.cli.img_bench import BenchParams, run_bench


class RecordingBackend:
    """Counts the writes in flight and notes, for each flush, the thread and that count."""

    length = 1 << 20

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.flushes: list[tuple[str, int]] = []

    def pwrite(self, offset: int, data) -> None:
        with self.lock:
            self.in_flight += 1
        time.sleep(0.001)
        with self.lock:
            self.in_flight -= 1

    def flush(self) -> None:
        with self.lock:
            self.flushes.append((threading.current_thread().name, self.in_flight))


def _params(**changes) -> BenchParams:
    p = BenchParams(count=40, depth=4, write=True, flush_interval=8, step=4096)
    for name, value in changes.items():
        setattr(p, name, value)
    return p


def test_flushes_wait_for_the_requests_in_flight_by_default():
    backend = RecordingBackend()
    run_bench(backend, _params())
    assert backend.flushes == [(threading.current_thread().name, 0)] * 5


def test_no_drain_flushes_from_a_worker_among_the_requests():
    backend = RecordingBackend()
    run_bench(backend, _params(drain=False))
    assert len(backend.flushes) == 5  # after 8, 16, 24, 32 and all 40 completions
    assert all(name.startswith("arctern-bench") for name, _ in backend.flushes)


def test_no_drain_counts_remaining_requests_as_qemu_img():
    """40 requests, interval 12: flushes when 36, 24, 12 and 0 remain (qemu-img's bench_cb)."""
    backend = RecordingBackend()
    run_bench(backend, _params(drain=False, flush_interval=12))
    assert len(backend.flushes) == 4
