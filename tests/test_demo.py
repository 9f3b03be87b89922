"""arctern-demo, the README's main command, end to end; and its built-in guest.

Each demo run migrates the guest between two real arctern-system processes while it
writes; the image is then checked with the real qemu-img, and the sectors the guest
says it verified are read back through qemu-img and compared with what it wrote.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arctern_target_i386.guests import build as guest_build

from arctern.cli.demo_session import DemoResult
from arctern.plugins import default_registry

BIN = Path(sys.executable).parent
DEMO = str(BIN / "arctern-demo")
GUEST = default_registry().machine_type("microvm").builtin_guest("migration-demo")
VERIFIED = re.compile(
    r"^ *destination guest \| verified (\d+) rounds: (\d+) disk sectors, 1024 RAM pages$", re.M
)
#: Wide enough that rich never wraps a line the tests look for.
ENV = {**os.environ, "COLUMNS": "200"}
SLOT = 64 << 10
SLOTS = 4096  # the demo's 256 MiB image in 64 KiB slots


def demo(*args: str, timeout: float = 240, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DEMO, "-m", "32", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def expected_sector(round_: int) -> bytes:
    """What the guest writes in a round: 128 words, round * 2654435761 ^ i * 40503."""
    words = [(round_ * 2654435761 ^ i * 40503) & 0xFFFFFFFF for i in range(128)]
    return b"".join(w.to_bytes(4, "little") for w in words)


def read_slots(image: Path, fmt: str, rounds: int, tmp_path: Path) -> list[bytes]:
    """The first sector of each slot the guest wrote, read through qemu-img (the real peer)."""
    raw = tmp_path / "readback.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", fmt, "-O", "raw", str(image), str(raw)], check=True
    )
    with raw.open("rb") as f:
        sectors = []
        for slot in range(min(rounds, SLOTS)):
            f.seek(slot * SLOT)
            sectors.append(f.read(512))
    return sectors


def children_of(workdir: Path) -> list[str]:
    """Command lines of live processes that still use ``workdir`` (left-over emulators)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        names = (str(workdir), str(workdir).replace(",", ",,"))  # as in -drive file=
        if any(name in cmdline for name in names) and "arctern-system" in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.parametrize(
    "transport, fmt, machine",
    [
        ("tcp", "qcow2", "microvm"),
        ("unix", "qcow2", "microvm,acpi=off"),  # no power-off there: the guest halts
        ("exec", "qcow2", "microvm"),
        ("tcp", "raw", "microvm"),
        ("exec", "raw", "microvm"),
    ],
)
def test_demo_migrates_the_writing_guest_and_everything_verifies(transport, fmt, machine, tmp_path):
    require("qemu-img")
    workdir = tmp_path / "the demo, its files"  # a comma means something in -drive/-qmp
    result = demo(
        "--transport", transport, "--format", fmt, "-M", machine, "--workdir", str(workdir)
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert result.stderr == ""
    assert "continuous across the hand-over: no line lost or doubled" in out
    # the image's active flag from query-block at each step of the hand-over
    if transport != "exec":  # over exec the destination starts once the stream is saved
        assert "destination, waiting for the stream: inactive" in out
    assert "source, after the migration: inactive" in out
    assert "destination, running the guest: active" in out
    power_off = (
        "verified and halted (no power-off)" if "acpi=off" in machine else "powered the machine off"
    )
    assert f"destination: the guest {power_off}" in out
    assert "source: migrate " + ("exec:cat > " if transport == "exec" else f"{transport}:") in out
    assert "the source is postmigrate, image inactive" in out
    assert out.rstrip().endswith("everything verified")
    match = VERIFIED.search(out)
    assert match, out
    rounds, sectors = int(match[1]), int(match[2])
    assert rounds > 100  # it wrote on the source before the migration and on the destination
    assert sectors == min(rounds, SLOTS)
    # one write per round: some on the source, none there after the hand-over, the rest
    # on the destination (counted there just before the key that ends the run)
    writes = re.search(r"source: (\d+) \(0 after the hand-over\); destination: (\d+)", out)
    assert writes, out
    assert 100 <= int(writes[1]) and 0 < int(writes[2]) and sum(map(int, writes.groups())) <= rounds
    image = workdir / f"disk.{fmt}"
    if fmt == "qcow2":
        assert "No errors were found on the image." in out
        check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    else:
        assert "does not support checks" in out
    sectors = read_slots(image, fmt, rounds, tmp_path)
    # a slot holds the last round written there: the guest wraps around after SLOTS rounds
    last_round = [s + SLOTS * ((rounds - 1 - s) // SLOTS) for s in range(len(sectors))]
    wrong = [s for s, sector in enumerate(sectors) if sector != expected_sector(last_round[s])]
    assert wrong == [], f"{len(wrong)} of {len(sectors)} slots differ, first ones: {wrong[:8]}"
    assert children_of(workdir) == []


@pytest.mark.parametrize("keep", [True, False])
def test_destination_that_cannot_listen_is_one_error_line(keep, tmp_path):
    """The temporary directory goes, unless --keep: then its logs say what happened."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = demo(
            "--port", str(port), *(["--keep"] if keep else []),
            env={**ENV, "TMPDIR": str(tmp_path)}, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("arctern-demo: destination: ")
    assert f"cannot listen on tcp:127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    kept = list(tmp_path.iterdir())
    if keep:
        assert [f"kept {kept[0]}"] == result.stdout.splitlines()[-1:]
        assert "cannot listen" in (kept[0] / "destination.log").read_text()
        assert children_of(kept[0]) == []
    else:
        assert kept == []


def demo_migrating(workdir: Path, **popen) -> subprocess.Popen:
    """A slow demo, returned once both sides are up and the migration is under way."""
    process = subprocess.Popen(
        [DEMO, "-m", "32", "--max-bandwidth", "1M", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    for line in process.stdout:
        if "source: migrate" in line:
            break
    assert len(children_of(workdir)) == 2
    return process


def test_ctrl_c_ends_every_child(tmp_path):
    """Ctrl-C at a terminal signals the whole foreground process group, mid-migration."""
    # its own process group, as a shell's foreground job
    process = demo_migrating(tmp_path, start_new_session=True)
    try:
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr == "arctern-demo: interrupted\n"
    assert children_of(tmp_path) == []


def test_a_killed_demo_leaves_no_emulator_running(tmp_path):
    """SIGKILL cannot be caught: the kernel ends the children (parent-death signal)."""
    process = demo_migrating(tmp_path)
    process.kill()
    process.communicate()
    deadline = time.monotonic() + 30
    while children_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children_of(tmp_path) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "8"], "--ram: the demo guest needs at least 16 MiB"),
        (["-m", "lots"], "--ram: invalid size 'lots'"),
        (["-M", "nosuch"], "-M nosuch: no such machine type (see arctern-system -M help)"),
        (["--transport", "unix", "--port", "4444"], "--port: a port number from 1 to 65535"),
        (["--transport", "carrier-pigeon"], "argument --transport: invalid choice"),
    ],
)
def test_bad_options_are_one_error_line(args, message, tmp_path):
    result = demo(*args, "--workdir", str(tmp_path / "w"), timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"arctern-demo: {message}")
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "w").exists()  # nothing created before the options are checked


def require(*tools: str) -> None:
    """Fail (never skip) when a peer or the cross compiler is missing: CI installs them."""
    for name in tools:
        if shutil.which(name) is None:
            pytest.fail(f"{name} is not installed: run scripts/setup.sh")


def test_shipped_guest_is_built_from_its_source(tmp_path):
    require("i686-linux-gnu-gcc")
    rebuilt = guest_build.build("migration_demo", tmp_path)
    # compare digests: a byte diff of two ELFs says nothing and takes pytest a while
    digest = hashlib.sha256
    assert digest(rebuilt.read_bytes()).digest() == digest(GUEST.read_bytes()).digest(), (
        "the shipped migration_demo.elf is stale: run "
        "python plugins/target_i386/src/arctern_target_i386/guests/build.py"
    )


def test_guest_runs_alike_under_qemu_and_arctern(tmp_path):
    """With rounds=N its output is fixed; QEMU and Arctern must agree on all of it."""
    require("qemu-system-i386", "qemu-img")
    results = {}
    for name, command in (
        ("qemu", ["qemu-system-i386"]),
        ("arctern", [str(BIN / "arctern-system")]),
    ):
        image = tmp_path / f"{name}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "8M"], check=True)
        run = subprocess.run(
            [*command, "-M", "microvm", "-m", "32", "-nodefaults", "-display", "none",
             "-serial", "stdio", "-kernel", str(GUEST), "-append", "rounds=150",
             "-drive", f"file={image},format=qcow2,if=none,id=d0",
             "-device", "virtio-blk-device,drive=d0"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        results[name] = (run.stdout, run.returncode)
    assert results["arctern"] == results["qemu"]
    assert results["qemu"] == (
        "migration demo guest: 128 slots of 64 KiB, 150 rounds\n"
        "round 100: disk and RAM ok\n"
        "verified 150 rounds: 128 disk sectors, 1024 RAM pages\n",
        0,
    )


def test_a_destination_trusting_stale_metadata_does_not_verify(tmp_path):
    """With qcow2's invalidate_cache made inert (test-only switch), the demo must fail."""
    switch = tmp_path / "inert"
    switch.mkdir()
    (switch / "sitecustomize.py").write_text(
        "from arctern_block_qcow2.driver import Qcow2Driver\n"
        "Qcow2Driver.invalidate_cache = lambda self: None  # trust stale metadata\n"
    )
    result = subprocess.run(
        [DEMO, "-m", "32", "--workdir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=240,
        env={**ENV, "PYTHONPATH": str(switch)},
    )
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("arctern-demo: the guest on the destination reports: FAIL: ")
    assert result.stderr.count("\n") == 1
    assert "everything verified" not in result.stdout
    assert children_of(tmp_path / "demo") == []


def verified_result(**changes) -> DemoResult:
    """What a good run records (as the end-to-end runs above produce it), then ``changes``."""
    result = DemoResult(
        migration={"status": "completed"},
        source_state="postmigrate",
        source_output=["migration demo guest: ...", "round 100: ok", "round 200: ok"],
        destination_output=["round 300: ok", "verified 345 rounds: 345 disk sectors, ..."],
        guest_status=0,
        check_status=0,
        activity=[
            ("destination, waiting for the stream", False),
            ("source, after the migration", False),
            ("destination, running the guest", True),
        ],
        source_writes=250,
        source_writes_at_end=250,
    )
    for key, value in changes.items():
        setattr(result, key, value)
    return result


@pytest.mark.parametrize(
    "changes",
    [
        {"source_output": ["round 100: ok", "round 200: ok", "round 200: ok"]},  # doubled
        {"destination_output": ["verified 345 rounds: ..."]},  # round 300 lost
        {"destination_output": ["round 300: ok", "round 400: ok", "verified 345 rounds"]},
        {"destination_output": ["round 300: ok"]},  # no verification line
        {"activity": [("destination, waiting for the stream", True)]},  # active too early
        {"activity": [("source, after the migration", True)]},
        {"source_writes_at_end": 251},  # the source wrote after the hand-over
        {"source_state": "running"},
        {"migration": {"status": "failed"}},
        {"guest_status": 1},
        {"check_status": 2},  # arctern-img check found corruptions
    ],
)
def test_anything_wrong_is_not_verified(changes):
    assert verified_result().ok
    assert not verified_result(**changes).ok


def test_what_may_be_missing_still_verifies():
    """A board that cannot power off, a monitor without the active flag, raw images."""
    activity = [("source, after the migration", None)]
    assert verified_result(guest_status=None, activity=activity, check_status=63).ok
