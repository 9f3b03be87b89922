"""The pre-copy engine and the hand-over, in-process, over real transports and images."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from arctern.errors import ImageLockError, MigrationError, TransportError, UsageError
from arctern.machine.memory import PAGE_SIZE
from arctern.migration.manager import POSTMIGRATE_REFUSAL, MigrationManager
from arctern.migration.outgoing import BURST

RAM_SIZE = 4 << 20


def _pair(registry, make_machine, image, uri="tcp:127.0.0.1:0", *, autostart=True, fill=True):
    source = make_machine(RAM_SIZE, image)
    if fill:
        source.ram.data[: RAM_SIZE // 2] = os.urandom(RAM_SIZE // 2)
    dest = make_machine(RAM_SIZE, image, incoming=True)
    src_mig = MigrationManager(source, registry)
    dst_mig = MigrationManager(dest, registry)
    dst_mig.start_incoming(uri, autostart=autostart)
    address = dst_mig.incoming.socket_address
    if address.get("type") == "inet":
        uri = f"tcp:{address['host']}:{address['port']}"
    return source, dest, src_mig, dst_mig, uri


def _refuse_activation(drive, image):
    """Make ``drive.activate`` fail as if another process held the image; returns the real one."""
    real_activate = drive.activate

    def failing_activate():
        raise ImageLockError(f'Failed to get "write" lock on {image}')

    drive.activate = failing_activate
    return real_activate


def _events(manager) -> list:
    seen = []
    manager.listeners.append(lambda event, data: seen.append((event, data)))
    return seen


def _done(*managers):
    return lambda: all(
        m.query().get("status") in ("completed", "failed", "cancelled") for m in managers
    )


def test_running_guest_moves_over_tcp_and_nothing_differs(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.capabilities["events"] = True
    events = _events(src_mig)
    run_until(lambda: source.cpus[0].steps > 5, source)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)

    info = src_mig.query()
    assert info["status"] == "completed", info
    assert dst_mig.query()["status"] == "completed"
    assert source.runstate == "postmigrate" and dest.runstate == "running"
    assert dest.ram.data == source.ram.data
    assert dest.cpus[0].get_state() == source.cpus[0].get_state()
    assert dest.devices[0].ticks == source.devices[0].ticks
    assert dest.devices[0].post_loaded == 1
    assert dest.clock.now == source.clock.now
    # exactly one side owns the image
    assert not source.drives["disk0"].active and dest.drives["disk0"].active
    ram = info["ram"]
    assert ram["total"] == RAM_SIZE
    assert ram["normal"] >= RAM_SIZE // 2 // PAGE_SIZE
    assert ram["duplicate"] > 0 and ram["transferred"] >= RAM_SIZE // 2
    assert ram["dirty-sync-count"] >= 2  # as QEMU: the first sync and the one at switchover
    assert {"total-time", "downtime", "setup-time"} <= set(info)
    statuses = [d["status"] for e, d in events if e == "MIGRATION"]
    assert statuses == ["setup", "active", "device", "completed"]
    # the guest goes on at the destination; the source does not touch the image any more
    before = open(image, "rb").read()
    mtime = os.stat(image).st_mtime_ns
    for _ in range(5):
        source.step()
    assert open(image, "rb").read() == before and os.stat(image).st_mtime_ns == mtime
    steps = dest.cpus[0].steps
    dest.step()
    assert dest.cpus[0].steps == steps + 1


def test_busy_guest_needs_several_passes(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    source.dirty_pages = 200
    src_mig.capabilities["events"] = True
    src_mig.set_parameters({"downtime-limit": 0})
    events = _events(src_mig)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    info = src_mig.query()
    assert info["status"] == "completed"
    # As QEMU: a pass for the first sync (before RAM flows), one per further round and
    # one for the last sync at switchover; dirty-sync-count counts them all.
    passes = [d["pass"] for e, d in events if e == "MIGRATION_PASS"]
    assert passes == list(range(1, len(passes) + 1)) and len(passes) >= 3
    assert info["ram"]["dirty-sync-count"] == passes[-1]
    kinds = [(e, d.get("status")) for e, d in events]
    assert kinds.index(("MIGRATION_PASS", None)) < kinds.index(("MIGRATION", "active"))
    assert kinds[-3:] == [
        ("MIGRATION", "device"),
        ("MIGRATION_PASS", None),
        ("MIGRATION", "completed"),
    ]
    assert dest.ram.data == source.ram.data


def test_unix_transport_and_paused_guest_stays_paused(
    registry, make_machine, run_until, image, tmp_path
):
    source, dest, src_mig, dst_mig, uri = _pair(
        registry, make_machine, image, f"unix:{tmp_path}/m.sock"
    )
    source.pause("paused")
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert src_mig.query()["status"] == "completed"
    assert dest.runstate == "paused" and dest.drives["disk0"].active
    assert dest.ram.data == source.ram.data


@pytest.mark.parametrize("runstate", ["io-error", "prelaunch"])
@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "minus-S"])
def test_a_stopped_guest_keeps_its_run_state(
    registry, make_machine, run_until, image, runstate, autostart
):
    """As QEMU: stopped on an I/O error (werror=stop) or never started, the same on arrival."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image, autostart=autostart)
    source.pause(runstate)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert src_mig.query()["status"] == "completed"
    assert dest.runstate == runstate and dest.states == [runstate]


def test_a_bad_run_state_in_the_stream_fails_the_migration(
    registry, make_machine, run_until, image
):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    source.pause("no-such-state")
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dst_mig.query()["status"] == "failed"
    assert "bad run state 'no-such-state'" in dst_mig.query()["error-desc"]
    assert dest.runstate == "inmigrate" and not dest.drives["disk0"].active
    assert source.drives["disk0"].active


def test_minus_s_activates_images_at_completion(registry, make_machine, run_until, image):
    """As QEMU without late-block-activate: the destination owns the images once completed."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image, autostart=False)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dest.runstate == "paused"
    assert dest.drives["disk0"].active and not source.drives["disk0"].active
    dst_mig.prepare_cont()
    assert dest.drives["disk0"].active


@pytest.mark.parametrize("source_runs", [True, False], ids=["running", "paused-source"])
@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "minus-S"])
def test_late_block_activate_leaves_activation_to_cont(
    registry, make_machine, run_until, image, autostart, source_runs
):
    """With late-block-activate, only a guest that starts at once activates at completion."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image, autostart=autostart)
    dst_mig.capabilities["late-block-activate"] = True
    if not source_runs:
        source.pause("paused")
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dst_mig.query()["status"] == "completed"
    starts = autostart and source_runs
    assert dest.drives["disk0"].active is starts
    assert dest.runstate == ("running" if starts else "paused")
    dst_mig.prepare_cont()
    assert dest.drives["disk0"].active


@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "minus-S"])
def test_a_waiting_destination_takes_capabilities(
    registry, make_machine, run_until, image, autostart
):
    """As QEMU: only an outgoing migration refuses migrate-set-capabilities; a destination
    sets its own while it waits, and they apply. Its MIGRATION completed comes after the
    guest took its run state (QEMU's RESUME, then completed)."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image, autostart=autostart)
    dst_mig.set_capabilities(
        [
            {"capability": "events", "state": True},
            {"capability": "late-block-activate", "state": True},
        ]
    )
    seen = []
    dst_mig.listeners.append(lambda event, data: seen.append((data["status"], dest.runstate)))
    src_mig.migrate(uri)
    with pytest.raises(MigrationError, match="There's a migration process in progress"):
        src_mig.set_capabilities([{"capability": "events", "state": True}])
    run_until(_done(src_mig, dst_mig), source, dest)
    state = "running" if autostart else "paused"
    assert seen == [("active", "inmigrate"), ("completed", state)]
    assert dest.drives["disk0"].active is autostart  # late-block-activate took effect


def test_activation_failure_at_the_destination_completes_paused(
    registry, make_machine, run_until, image, caplog
):
    """As QEMU: the error is reported, the guest does not start, and cont tries again."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    drive = dest.drives["disk0"]
    real_activate = _refuse_activation(drive, image)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dst_mig.query()["status"] == "completed"
    assert dest.runstate == "paused" and not drive.active
    assert 'Failed to get "write" lock' in caplog.text
    with pytest.raises(MigrationError, match="cannot activate drive 'disk0'.*lock"):
        dst_mig.prepare_cont()
    drive.activate = real_activate
    dst_mig.prepare_cont()
    assert drive.active


def test_cont_after_postmigrate_reactivates(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    for drive in dest.drives.values():
        drive.close()
    src_mig.prepare_cont()
    assert source.drives["disk0"].active


def test_through_a_file_with_exec(registry, make_machine, run_until, image, tmp_path):
    state = tmp_path / "guest.state.gz"
    source = make_machine(RAM_SIZE, image)
    source.ram.data[:PAGE_SIZE] = os.urandom(PAGE_SIZE)
    src_mig = MigrationManager(source, registry)
    src_mig.migrate(f"exec:gzip -c > {state}")
    run_until(_done(src_mig), source)
    assert src_mig.query()["status"] == "completed"
    assert source.runstate == "postmigrate"

    dest = make_machine(RAM_SIZE, image, incoming=True)
    dst_mig = MigrationManager(dest, registry)
    dst_mig.start_incoming(f"exec:gzip -dc {state}", autostart=True)
    run_until(_done(dst_mig), dest)
    assert dst_mig.query()["status"] == "completed"
    assert dest.ram.data == source.ram.data and dest.runstate == "running"
    assert dest.drives["disk0"].active


@pytest.mark.parametrize("source_runs", [True, False], ids=["running", "paused"])
@pytest.mark.parametrize("when", ["setup", "active", "device"])
def test_cancel_in_each_phase_gives_the_guest_back(
    registry, make_machine, run_until, image, when, source_runs
):
    """The images are active again on the source. A running guest resumes; a paused one
    stays paused, unless the switchover had begun: then, as qemu-system-i386 7.2 does
    (checked with pause-before-switchover), it ends in postmigrate, where migrate is
    refused until cont."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    if not source_runs:
        source.pause("paused")
    src_mig.set_parameters({"max-bandwidth": 1 << 20})
    src_mig.migrate(uri)
    if when == "active":
        run_until(lambda: src_mig.query()["status"] == "active", source, dest)
    elif when == "device":
        src_mig.set_parameters({"max-bandwidth": 0})
        run_until(lambda: src_mig.query()["status"] == "device", source, dest)
        assert source.runstate == "finish-migrate"
        with pytest.raises(MigrationError, match="^Migration is not finalized yet$"):
            src_mig.prepare_cont()
    src_mig.cancel()
    run_until(_done(src_mig), source, dest)
    status = src_mig.query()["status"]
    assert status == "cancelled"
    stopped = "postmigrate" if when == "device" else "paused"
    assert source.runstate == ("running" if source_runs else stopped)
    assert source.drives["disk0"].active
    run_until(_done(dst_mig), dest)
    assert dst_mig.query()["status"] == "failed" and not dest.drives["disk0"].active
    if source.runstate == "postmigrate":
        with pytest.raises(MigrationError, match=re.escape(POSTMIGRATE_REFUSAL)):
            src_mig.migrate(uri)
        src_mig.prepare_cont()  # nothing to re-activate; the monitor's cont then runs it
        assert source.drives["disk0"].active


def test_verify_catches_a_corrupted_page(registry, make_machine, run_until, image, monkeypatch):
    from arctern.migration import incoming

    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.capabilities["verify"] = True
    original = incoming.StateCollector.apply

    def corrupt_then_apply(self, machine):
        machine.ram.data[5 * PAGE_SIZE + 3] ^= 0x40
        original(self, machine)

    monkeypatch.setattr(incoming.StateCollector, "apply", corrupt_then_apply)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    info = src_mig.query()
    assert info["status"] == "failed"
    assert "verify" in info["error-desc"]
    assert source.runstate == "running" and source.drives["disk0"].active
    assert dst_mig.query()["status"] == "failed" and not dest.drives["disk0"].active


def test_verify_passes_when_nothing_differs(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.capabilities["verify"] = True
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert src_mig.query()["status"] == "completed" and dest.runstate == "running"


def test_destination_dies_mid_stream(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.set_parameters({"max-bandwidth": 1 << 20})
    src_mig.migrate(uri)
    run_until(lambda: dst_mig.query()["status"] == "active", source, dest)
    dst_mig.incoming.loader.close()  # what a killed process does to its socket
    run_until(_done(src_mig), source)
    info = src_mig.query()
    assert info["status"] == "failed" and "error-desc" in info
    assert source.runstate == "running" and source.drives["disk0"].active


def test_source_dies_mid_stream(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    dst_mig.exit_on_incoming_failure = True
    src_mig.set_parameters({"max-bandwidth": 1 << 20})
    src_mig.migrate(uri)
    writer = src_mig.outgoing.writer
    run_until(lambda: dst_mig.query()["status"] == "active" and writer.connected.is_set(), dest)
    writer.stream.close()  # what a killed process does to its socket
    run_until(_done(dst_mig), dest)
    assert "truncated" in dst_mig.query()["error-desc"]
    assert dest.exit_status == 1 and not dest.drives["disk0"].active


def test_ram_size_mismatch_is_refused(registry, make_machine, run_until, image):
    source = make_machine(RAM_SIZE, image)
    dest = make_machine(RAM_SIZE * 2, image, incoming=True)
    src_mig, dst_mig = MigrationManager(source, registry), MigrationManager(dest, registry)
    dst_mig.start_incoming("tcp:127.0.0.1:0", autostart=True)
    port = dst_mig.incoming.socket_address["port"]
    src_mig.migrate(f"tcp:127.0.0.1:{port}")
    run_until(_done(src_mig, dst_mig), source, dest)
    assert "use the same -m" in dst_mig.query()["error-desc"]
    assert src_mig.query()["status"] == "failed" and source.runstate == "running"


def test_bad_uris_fail_at_once_and_the_guest_runs(registry, make_machine, run_until, image):
    source = make_machine(RAM_SIZE, image)
    manager = MigrationManager(source, registry)
    with pytest.raises(MigrationError, match="expects a valid migration protocol .*'ftp'"):
        manager.migrate("ftp:x")
    with pytest.raises(TransportError, match="bad migration URI"):
        manager.migrate("tcp:nohost")
    manager.migrate("tcp:127.0.0.1:1")
    run_until(_done(manager), source)
    assert "refused" in manager.query()["error-desc"]
    assert source.runstate == "running" and source.drives["disk0"].active


def test_failing_exec_command(registry, make_machine, run_until, image, tmp_path):
    source = make_machine(RAM_SIZE, image)
    manager = MigrationManager(source, registry)
    manager.migrate(f"exec:cat > {tmp_path}/no/such/dir")
    run_until(_done(manager), source)
    info = manager.query()
    assert info["status"] == "failed" and "exit status" in info["error-desc"]
    assert source.runstate == "running" and source.drives["disk0"].active


def test_parameters_and_capabilities_are_checked(registry, make_machine):
    manager = MigrationManager(make_machine(RAM_SIZE, None), registry)
    assert manager.parameters == {"max-bandwidth": 134217728, "downtime-limit": 300}
    with pytest.raises(UsageError):
        manager.set_parameters({"downtime-limit": -1})
    with pytest.raises(UsageError):
        manager.set_parameters({"bogus": 1})
    with pytest.raises(UsageError):
        manager.set_capabilities([{"capability": "x-bogus", "state": True}])
    manager.set_capabilities([{"capability": "verify", "state": True}])
    assert {"capability": "verify", "state": True} in manager.capability_list()


def test_paused_guest_a_to_b_to_c_without_ever_running(registry, make_machine, run_until, image):
    a = make_machine(RAM_SIZE, image)
    a.pause("paused")
    a.ram.data[:PAGE_SIZE] = os.urandom(PAGE_SIZE)
    steps = a.cpus[0].steps
    current, current_mig = a, MigrationManager(a, registry)
    for _hop in range(2):
        nxt = make_machine(RAM_SIZE, image, incoming=True)
        nxt_mig = MigrationManager(nxt, registry)
        nxt_mig.start_incoming("tcp:127.0.0.1:0", autostart=True)
        current_mig.migrate(f"tcp:127.0.0.1:{nxt_mig.incoming.socket_address['port']}")
        run_until(_done(current_mig, nxt_mig), current, nxt)
        assert current_mig.query()["status"] == "completed"
        assert nxt.runstate == "paused" and nxt.drives["disk0"].active
        assert not current.drives["disk0"].active
        current, current_mig = nxt, nxt_mig
    assert current.ram.data == a.ram.data and current.cpus[0].steps == steps


def _qemu_io_write(image: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "write 0 512", image], capture_output=True, text=True
    )


def test_no_third_writer_during_or_after_migration(registry, make_machine, run_until, image):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.set_parameters({"max-bandwidth": 1 << 20})
    src_mig.migrate(uri)
    run_until(lambda: src_mig.query()["status"] == "active", source, dest)
    during = _qemu_io_write(image)
    src_mig.set_parameters({"max-bandwidth": 0})
    run_until(_done(src_mig, dst_mig), source, dest)
    after = _qemu_io_write(image)
    for result in (during, after):
        assert result.returncode != 0
        assert 'Failed to get "write" lock' in result.stderr


def test_max_bandwidth_throttles(registry, make_machine, run_until, image):
    """The pages sent never outrun max-bandwidth over the migration's time, burst included.

    A loaded machine only makes the migration slower, so only a lower bound on the
    time is asserted, and with exact slack: the throttle lets page data out once
    ``limit * (elapsed + burst)`` allows it (headers are not page data), and
    ``total-time`` is whole milliseconds, rounded down. The guest is paused, so every
    page travels in the throttled first pass; the stop-and-copy phase, unthrottled
    as in QEMU, has none left. Unthrottled, 2 MiB would take a few milliseconds.
    """
    limit = 16 << 20
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    source.pause("paused")
    src_mig.set_parameters({"max-bandwidth": limit})
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    info = src_mig.query()
    assert info["status"] == "completed"
    page_bytes = info["ram"]["normal-bytes"]
    assert page_bytes >= RAM_SIZE // 2  # the random half of RAM
    burst = limit * BURST
    # 2 MiB against 0.8 MiB of burst: at least 75 ms (a few ms unthrottled)
    assert page_bytes <= limit * (info["total-time"] + 1) / 1000 + burst


def test_state_that_does_not_fit_is_a_stream_error(registry, make_machine, run_until, image):
    """A hostile (or mismatched) CPU section fails the load with one line, not a crash."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    source.cpus[0].get_state = lambda: {"unexpected": [1, 2, 3]}
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    error = dst_mig.query()["error-desc"]
    assert "state of cpu0 does not fit this machine (KeyError: 'steps')" in error
    assert src_mig.query()["status"] == "failed" and source.runstate == "running"
    assert source.drives["disk0"].active and not dest.drives["disk0"].active


def test_fuzzed_saved_streams_fail_cleanly(registry, make_machine, run_until, image, tmp_path):
    """Damaged copies of a real stream: each load fails with one line, no thread dies."""
    import random
    import threading

    state = tmp_path / "state"
    source = make_machine(RAM_SIZE, image)
    source.ram.data[: 8 * PAGE_SIZE] = os.urandom(8 * PAGE_SIZE)
    src_mig = MigrationManager(source, registry)
    src_mig.migrate(f"exec:cat > {state}")
    run_until(_done(src_mig), source)
    good = state.read_bytes()
    crashes = []
    hook, threading.excepthook = threading.excepthook, crashes.append
    rng = random.Random(7)
    try:
        for trial in range(25):
            data = bytearray(good)
            if trial % 2:
                for _ in range(3):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                del data[rng.randrange(len(data)) :]
            damaged = tmp_path / f"damaged{trial}"
            damaged.write_bytes(data)
            dest = make_machine(RAM_SIZE, image, incoming=True)
            dst_mig = MigrationManager(dest, registry)
            dst_mig.start_incoming(f"exec:cat {damaged}", autostart=True)
            run_until(_done(dst_mig), dest)
            info = dst_mig.query()
            assert info["status"] == "failed", trial
            assert "\n" not in info["error-desc"]
            assert not dest.drives["disk0"].active
            dest.drives["disk0"].close()
    finally:
        threading.excepthook = hook
    assert crashes == []


def test_inactivation_failure_keeps_the_guest_here(registry, make_machine, run_until, image):
    from arctern.errors import BlockError

    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    drive = source.drives["disk0"]

    def failing_inactivate():
        raise BlockError(f"flush of '{image}' failed: No space left on device")

    drive.inactivate = failing_inactivate
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    info = src_mig.query()
    assert info["status"] == "failed"
    assert "cannot inactivate drive 'disk0'" in info["error-desc"]
    assert source.runstate == "running" and drive.active
    assert dst_mig.query()["status"] == "failed" and not dest.drives["disk0"].active


def test_reactivation_failure_stays_stopped_and_says_why(
    registry, make_machine, run_until, image, monkeypatch
):
    from arctern.migration import incoming

    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.capabilities["verify"] = True
    original = incoming.StateCollector.apply

    def corrupt_then_apply(self, machine):  # the destination refuses the stream
        machine.ram.data[7] ^= 1
        original(self, machine)

    monkeypatch.setattr(incoming.StateCollector, "apply", corrupt_then_apply)
    drive = source.drives["disk0"]
    real_activate = _refuse_activation(drive, image)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    info = src_mig.query()
    assert info["status"] == "failed"
    assert "the guest stays stopped because" in info["error-desc"]
    assert 'Failed to get "write" lock' in info["error-desc"]
    assert source.runstate == "postmigrate" and not drive.active
    with pytest.raises(MigrationError, match=re.escape(POSTMIGRATE_REFUSAL)):
        src_mig.migrate(uri)  # as QEMU: the run state decides, however it was reached
    drive.activate = real_activate  # the other holder went away: cont takes the image back
    src_mig.prepare_cont()
    assert drive.active


def test_cont_on_the_source_is_refused_while_the_destination_owns_the_image(
    registry, make_machine, run_until, image
):
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dest.drives["disk0"].active
    with pytest.raises(MigrationError, match="cannot activate drive 'disk0'.*lock"):
        src_mig.prepare_cont()
    assert not source.drives["disk0"].active and source.runstate == "postmigrate"


def test_a_guest_that_left_cannot_be_sent_again(registry, make_machine, run_until, image, tmp_path):
    """As QEMU (6.0 on, 7.2 included): migrate in postmigrate is refused before anything
    starts; no command runs, no event, query-migrate still shows the migration that
    completed, the images stay inactive and untouched."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image)
    src_mig.capabilities["events"] = True
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    completed = src_mig.query()
    events = _events(src_mig)
    before = open(image, "rb").read(), os.stat(image).st_mtime_ns
    ran = tmp_path / "ran"
    for again in (f"exec:touch {ran}", "tcp:127.0.0.1:1", "bogus:x"):
        with pytest.raises(MigrationError, match=f"^{re.escape(POSTMIGRATE_REFUSAL)}$"):
            src_mig.migrate(again)
    for _ in range(3):
        source.step()
    assert not ran.exists() and events == []
    assert src_mig.query() == completed
    assert source.runstate == "postmigrate" and not source.drives["disk0"].active
    assert (open(image, "rb").read(), os.stat(image).st_mtime_ns) == before


def test_after_the_destination_died_cont_then_migrate_again(
    registry, make_machine, run_until, image
):
    """QEMU's way to send a guest on after its destination died: 'cont' on the source
    takes the images back (refused while the destination holds them), then migrate.
    The destination waits with -S (its images active), so the guest never ran there."""
    source, dest, src_mig, dst_mig, uri = _pair(registry, make_machine, image, autostart=False)
    src_mig.migrate(uri)
    run_until(_done(src_mig, dst_mig), source, dest)
    assert dest.runstate == "paused" and dest.drives["disk0"].active
    with pytest.raises(MigrationError, match="lock"):
        src_mig.prepare_cont()
    assert source.runstate == "postmigrate" and not source.drives["disk0"].active
    dest.drives["disk0"].close()  # the destination died: its locks went with it
    src_mig.prepare_cont()
    source.resume()
    assert source.drives["disk0"].active
    steps = source.cpus[0].steps
    run_until(lambda: source.cpus[0].steps > steps + 3, source)

    third = make_machine(RAM_SIZE, image, incoming=True)
    third_mig = MigrationManager(third, registry)
    third_mig.start_incoming("tcp:127.0.0.1:0", autostart=True)
    src_mig.migrate(f"tcp:127.0.0.1:{third_mig.incoming.socket_address['port']}")
    run_until(_done(src_mig, third_mig), source, third)
    assert src_mig.query()["status"] == third_mig.query()["status"] == "completed"
    assert source.runstate == "postmigrate" and third.runstate == "running"
    assert third.ram.data == source.ram.data
    assert third.cpus[0].get_state() == source.cpus[0].get_state()
    assert third.drives["disk0"].active and not source.drives["disk0"].active
    third.step()
    assert {off: third.drives["disk0"].pread(off, 512) for off in third.expected_disk()} == (
        third.expected_disk()
    )
