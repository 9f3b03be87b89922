"""arctern-system refuses bad options with QEMU's own words and exit status.

Every case runs qemu-system-i386 with the same options; the first line of its
error, without the ``qemu-system-i386: `` (or ``qemu: ``) prefix, must be ours
without ``arctern-system: ``, and both must exit with status 1.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from arctern.cli.system import main

PREFIXES = ("qemu-system-i386: ", "qemu: ", "arctern-system: ")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    where = tmp_path_factory.mktemp("cli")
    disk = where / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    text = where / "notes.txt"
    text.write_text("not a kernel\n" * 100)
    return {"DISK": str(disk), "TEXT": str(text), "DIR": str(where)}


CASES = [
    "-device nosuch",
    "-device i8259",
    "-device isa-debug-exit,foo=1",
    "-device isa-debug-exit,iobase=zz",
    "-device isa-debug-exit,iobase=-1",
    "-device virtio-blk-device",
    "-device virtio-blk-device,drive=nod",
    "-global virtio-mmio.force-legacy=maybe",
    "-drive file=/nonexistent/disk.img,format=raw,if=none,id=d0",
    "-drive file=DISK,format=zzz",
    "-drive file=DISK,format=raw,if=ide",
    "-drive file=DISK,format=raw,zz=1",
    "-drive file=DISK,format=raw,cache=bogus",
    "-drive file=DISK,format=raw,if=none,readonly=maybe",
    "-drive file=DISK,format=raw,if=none,id=d0 -drive file=DISK,format=raw,if=none,id=d0",
    "-serial zz",
    "-serial stdio -serial stdio",
    "-serial chardev:nosuch",
    "-chardev foo,id=x",
    "-chardev null",
    "-chardev null,id=x -chardev null,id=x",
    "-chardev file,id=x",
    "-chardev socket,id=x,path=/nonexistent/serial.sock",
    "-chardev stdio,id=c0 -serial stdio",
    "-serial stdio -monitor stdio",
    "-m 1Q",
    "-zzz",
    "-M nosuch",
    "-M microvm,zzz=1",
    "-cpu nosuch",
    "-kernel /nonexistent/kernel.elf",
    "-kernel TEXT",
    "-kernel DIR",
    "-pidfile /nonexistent/dir/pid -kernel TEXT",
]


def first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    for prefix in PREFIXES:
        if line.startswith(prefix):
            return line[len(prefix) :]
    return line


@pytest.mark.parametrize("case", CASES)
def test_bad_option_gets_qemus_message(case, files, capsys):
    args = ["-nodefaults", *(files.get(word, word) for word in case.split())]
    for key, value in files.items():
        args = [a.replace(f"file={key},", f"file={value},") for a in args]
    qemu = subprocess.run(
        ["qemu-system-i386", "-M", "microvm", "-display", "none", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    status = main(args)
    ours = capsys.readouterr()
    assert (status, first_line(ours.err)) == (qemu.returncode, first_line(qemu.stderr))
    assert ours.err.count("\n") == 1 and "Traceback" not in ours.err


@pytest.mark.parametrize(
    "args, message",
    [
        ("-smp 2", "-smp 2: Arctern emulates one CPU; use -smp 1"),
        ("-accel kvm", "-accel kvm: Arctern emulates in software; only tcg exists"),
        ("-enable-kvm", "-enable-kvm: Arctern emulates in software; drop it (or -accel tcg)"),
        ("-icount auto", "-icount auto: shift=auto is not supported; give a number 0-10"),
        ("-icount 11", "-icount 11: shift must be a number from 0 to 10"),
        ("-icount 3,sleep=maybe", "-icount 3,sleep=maybe: sleep and align take 'on' or 'off'"),
        ("-display gtk", "-display gtk: Arctern has no graphical display; use none"),
        ("-d nosuch", "-d nosuch: unknown log item 'nosuch' (-d help lists them)"),
        ("-echr zz", "-echr zz: expected a character code from 0 to 255"),  # QEMU: ignored
        ("-echr 256", "-echr 256: expected a character code from 0 to 255"),
        ("", "no -kernel given: microvm boots a Multiboot kernel image"),
    ],
)
def test_what_arctern_cannot_do_is_one_clear_line(args, message, capsys):
    assert main(["-nodefaults", *args.split()]) == 1
    assert capsys.readouterr().err == f"arctern-system: {message}\n"


@pytest.mark.parametrize(
    "args, first",
    [
        ("-M help", "Supported machines are:"),
        ("-device help", 'name "isa-debug-exit"'),
        ("-cpu help", "Available CPUs:"),
        ("-d help", "Log items (comma separated):"),
        ("-M microvm,help", "microvm-machine options:"),
        ("-device virtio-blk-device,help", "virtio-blk-device options:"),
    ],
)
def test_help_listings(args, first, capsys):
    assert main(args.split()) == 0
    out = capsys.readouterr().out
    assert out.startswith(first)
    if args == "-device help":  # board parts are not offered to -device
        assert "virtio-blk-device" in out and "i8259" not in out and "virtio-mmio" not in out


def test_device_nodes_and_empty_files_are_not_kernels(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert main(["-nodefaults", "-kernel", "/dev/zero"]) == 1
    assert capsys.readouterr().err == (
        "arctern-system: could not load kernel '/dev/zero': not a regular file\n"
    )
    assert main(["-nodefaults", "-kernel", str(empty)]) == 1
    assert capsys.readouterr().err == "arctern-system: invalid kernel header\n"


@pytest.mark.parametrize(
    "text, size",
    [("64", 64 << 20), ("1.5", 3 << 19), ("64M", 64 << 20), ("size=2G", 2 << 30), ("0", None)],
)
def test_memory_size_reads_as_qemu_reads_it(text, size):
    from arctern.cli.system_options import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["-m", text])).ram_size == size


def test_an_emulator_bug_is_one_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    from arctern.machine.machine import Machine

    kernel = tmp_path / "k.elf"
    kernel.write_bytes(bytes(64))

    def broken_run(self, *, start=True):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Machine, "run", broken_run)
    monkeypatch.setattr(Machine, "power_on", lambda self, **kwargs: None)
    assert main(["-nodefaults", "-kernel", str(kernel)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("arctern-system: internal error while running the guest at eip 0x")
    assert "ZeroDivisionError: division by zero" in err and err.count("\n") == 1


def test_machine_options_merge_over_several_m_options():
    from arctern.cli.system_options import build_parser, config_from_args

    args = build_parser().parse_args(["-M", "microvm", "-machine", "acpi=off,pit=off"])
    config = config_from_args(args)
    assert config.machine == "microvm"
    assert config.machine_options == {"acpi": "off", "pit": "off"}
    assert config_from_args(build_parser().parse_args([])).machine == "microvm"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["-version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("arctern-system version 0.1.0")


def test_pidfile_holds_the_pid_while_running(tmp_path, capsys, monkeypatch):
    from arctern.machine.machine import Machine

    pidfile, seen = tmp_path / "arctern.pid", []
    monkeypatch.setattr(Machine, "power_on", lambda self, **kwargs: None)
    monkeypatch.setattr(Machine, "run", lambda self, start=True: seen.append(pidfile.read_text()))
    assert main(["-nodefaults", "-kernel", "k", "-pidfile", str(pidfile)]) == 0
    assert seen == [f"{os.getpid()}\n"] and not pidfile.exists()


@pytest.mark.parametrize("text, shift, sleep", [("7", 7, True), ("shift=2,sleep=off", 2, False)])
def test_icount_option(text, shift, sleep):
    from arctern.cli.system_options import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["-icount", text]))
    assert (config.icount_shift, config.icount_sleep) == (shift, sleep)


def test_chardev_sockets_become_serial_spellings():
    from arctern.cli.system_options import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "-chardev",
            "socket,id=u,path=/tmp/x,,y.sock,server=on,wait=off",
            "-chardev",
            "socket,id=t,host=127.0.0.1,port=4444",
        ]
    )
    backends = [(c.id, c.backend) for c in config_from_args(args).chardevs]
    assert backends == [
        ("u", "unix:/tmp/x,,y.sock,server=on,wait=off"),
        ("t", "tcp:127.0.0.1:4444,server=off,wait=on"),
    ]
