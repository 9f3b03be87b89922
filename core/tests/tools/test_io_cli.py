"""arctern-io: qemu-io's commands, report lines, pattern checks and exit status."""

import re

import pytest

TIMING = re.compile(
    r"^[0-9.]+ (bytes|KiB|MiB|GiB), 1 ops; (\d\d\.\d\d sec|\d+:\d\d:\d\d\.\d\d) "
    r"\([0-9.]+ (bytes|KiB|MiB|GiB|TiB)/sec and [0-9.]+ ops/sec\)$"
)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(bytes(1 << 20))
    return "disk.raw"


def test_write_then_read_back_with_pattern(arctern_io, tmp_path, image):
    r = arctern_io("-f", "raw", "-c", "write -P 0xab 0 64k", "-c", "read -P 0xab 0 64k", image)
    lines = r.out.splitlines()
    assert r.rc == 0
    assert lines[0] == "wrote 65536/65536 bytes at offset 0"
    assert TIMING.match(lines[1]) and lines[1].startswith("64 KiB, 1 ops; ")
    assert lines[2] == "read 65536/65536 bytes at offset 0"
    assert TIMING.match(lines[3])
    assert (tmp_path / image).read_bytes()[:65537] == b"\xab" * 65536 + b"\0"


def test_pattern_mismatch_is_reported_and_fails(arctern_io, image):
    r = arctern_io("-f", "raw", "-c", "read -P 7 512 1k", "-c", "read -q 0 512", image)
    assert r.rc == 1
    assert r.out.splitlines()[0] == "Pattern verification failed at offset 512, 1024 bytes"
    assert r.out.splitlines()[1] == "read 1024/1024 bytes at offset 512"
    sub = arctern_io("-f", "raw", "-c", "read -P 7 -s 100 -l 10 0 4k", image)
    assert sub.out.splitlines()[0] == "Pattern verification failed at offset 100, 10 bytes"


def test_default_write_pattern_zero_writes_and_hexdump(arctern_io, tmp_path, image):
    r = arctern_io(
        "-f", "raw", "-c", "write 0 20", "-c", "write -z 4 4", "-c", "read -v 0 20", image
    )
    assert r.rc == 0
    dump = r.out.splitlines()[4:6]
    assert dump == [
        "00000000:  cd cd cd cd 00 00 00 00 cd cd cd cd cd cd cd cd  ................",
        "00000010:  cd cd cd cd  ....",
    ]


def test_hexdump_shows_alphanumerics(arctern_io, tmp_path, image):
    with open(tmp_path / image, "r+b") as f:
        f.write(b"Hello, qemu-io!\x00")
    r = arctern_io("-f", "raw", "-c", "read -v 0 16", image)
    assert r.out.splitlines()[0] == (
        "00000000:  48 65 6c 6c 6f 2c 20 71 65 6d 75 2d 69 6f 21 00  Hello..qemu.io.."
    )


def test_quiet_and_parsable_output(arctern_io, image):
    quiet = arctern_io("-f", "raw", "-c", "write -q 0 4k", "-c", "read -q 0 4k", image)
    assert (quiet.rc, quiet.out) == (0, "")
    parsable = arctern_io("-f", "raw", "-c", "read -C 0 4k", image)
    assert re.fullmatch(r"4096,1,0:00:\d\d\.\d\d,[0-9.]+,[0-9.]+\n", parsable.out)


def test_discard_flush_map(arctern_io, image):
    r = arctern_io(
        "-f", "raw", "-c", "discard 0 64k", "-c", "flush", "-c", "aio_flush", "-c", "map", image
    )
    lines = r.out.splitlines()
    assert r.rc == 0
    assert lines[0] == "discard 65536/65536 bytes at offset 0"
    assert lines[2] == "1 MiB (0x100000) bytes     allocated at offset 0 bytes (0x0)"


def test_errors_and_exit_status(arctern_io, image):
    r = arctern_io(
        "-f",
        "raw",
        "-c",
        "bogus",
        "-c",
        "read 0",
        "-c",
        "read abc 4k",
        "-c",
        "read -P 300 0 4k",
        "-c",
        "read 2M 4k",
        image,
    )
    assert r.rc == 1
    assert r.err.splitlines() == [
        'command "bogus" not found',
        "bad argument count 1 to read, expected at least 2 arguments",
    ]
    out = r.out.splitlines()
    assert out[0] == (
        "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- abc"
    )
    assert out[1] == "300 is not a valid pattern byte"
    assert out[2].startswith("read failed: ")


def test_read_only_and_open_close(arctern_io, image):
    r = arctern_io("-r", "-f", "raw", "-c", "write 0 512", image)
    assert r.rc == 1 and r.out.startswith("write failed: ")
    r = arctern_io(
        "-c", f"open -r -f raw {image}", "-c", "read 0 512", "-c", "close", "-c", "read 0 512"
    )
    assert r.rc == 1
    assert r.out.startswith("read 512/512 bytes at offset 0\n")
    assert r.err == "no file open, try 'help open'\n"


def test_open_failure_is_one_line(arctern_io):
    r = arctern_io("-c", "read 0 1", "missing.raw")
    assert r.rc == 1
    assert r.err.startswith("arctern-io: can't open device missing.raw: ")
    assert r.err.count("\n") == 1


def test_commands_from_stdin_with_prompt_and_quit(arctern_io, image):
    r = arctern_io("-f", "raw", image, stdin="write -P 5 0 4k\nread -P 5 0 4k\nquit\nread 0 1\n")
    assert r.rc == 0
    assert r.out.startswith("arctern-io> wrote 4096/4096 bytes at offset 0\n")
    assert "arctern-io> read 4096/4096 bytes at offset 0\n" in r.out
    assert r.out.count("arctern-io> ") == 3


def test_size_suffixes_and_length_limit(arctern_io, image):
    r = arctern_io("-f", "raw", "-c", "write -P 1 0.5k 1k", image)
    assert r.out.startswith("wrote 1024/1024 bytes at offset 512\n")
    big = arctern_io("-f", "raw", "-c", "write 0 3G", image)
    assert big.rc == 1
    assert big.out == "length cannot exceed 2147483136 without -n, given 3G\n"


def test_snapshot_mode_is_refused_not_ignored(arctern_io, tmp_path, image):
    r = arctern_io("-s", "-f", "raw", "-c", "write 0 512", image)
    assert r.rc == 1 and r.err.startswith("arctern-io: invalid option -- '-s'")
    assert (tmp_path / image).read_bytes()[:512] == bytes(512)


def test_write_from_a_source_file(arctern_io, tmp_path, image):
    (tmp_path / "payload.bin").write_bytes(bytes(range(256)) * 8)
    r = arctern_io("-f", "raw", "-c", "write -s payload.bin 4096 2048", image)
    assert (r.rc, r.out.splitlines()[0]) == (0, "wrote 2048/2048 bytes at offset 4096")
    assert (tmp_path / image).read_bytes()[4096:6144] == bytes(range(256)) * 8
    short = arctern_io("-f", "raw", "-c", "write -s payload.bin 0 4096", image)
    assert short.rc == 1 and short.out == "Failed to read 4096 bytes from payload.bin\n"


def test_vectored_and_aio_commands_length_truncate(arctern_io, tmp_path, image):
    r = arctern_io(
        "-f",
        "raw",
        "-c",
        "length",
        "-c",
        "writev -P 9 512 1k 1k",
        "-c",
        "aio_write -P 8 4k 512 512",
        "-c",
        "aio_flush",
        "-c",
        "readv -P 9 512 2k",
        "-c",
        "aio_read -P 7 4k 1k",
        "-c",
        "truncate 2M",
        "-c",
        "length",
        image,
    )
    out = r.out.splitlines()
    assert out[0] == "1 MiB"
    assert out[1] == "wrote 2048/2048 bytes at offset 512"
    assert out[3] == "wrote 1024/1024 bytes at offset 4096"
    assert out[5] == "read 2048/2048 bytes at offset 512"
    # an aio request counts as successful once submitted, even if its pattern mismatches
    assert out[7] == "Pattern verification failed at offset 4096, 1024 bytes"
    assert out[-1] == "2 MiB"
    assert r.rc == 0
    data = (tmp_path / image).read_bytes()
    assert len(data) == 2 << 20 and data[512:2560] == b"\x09" * 2048
