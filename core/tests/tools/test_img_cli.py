"""arctern-img on raw images: options, output layouts, exit codes, data."""

import json
import os
import threading

import pytest


def write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_create_prints_formatting_line_and_makes_the_image(arctern_img, tmp_path):
    r = arctern_img("create", "-f", "raw", "a.raw", "1.5M")
    assert r.rc == 0
    assert r.out == "Formatting 'a.raw', fmt=raw size=1572864\n"
    assert os.path.getsize(tmp_path / "a.raw") == 1572864


def test_create_quiet_and_default_format_raw(arctern_img, tmp_path):
    r = arctern_img("create", "-q", "b.img", "64k")
    assert (r.rc, r.out) == (0, "")
    assert os.path.getsize(tmp_path / "b.img") == 65536


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "-f", "raw", "x.raw"], "Image creation needs a size parameter"),
        (["create", "-f", "raw", "x.raw", "1Q"], "Invalid image size specified"),
        (["create", "-f", "nosuch", "x.raw", "1M"], "Unknown file format 'nosuch'"),
        (["create", "-f", "raw", "-o", "bogus=1", "x.raw", "1M"], "Invalid parameter 'bogus'"),
        (["create", "-f", "raw", "-x", "x.raw", "1M"], "unrecognized option '-x'"),
        (["create", "-f"], "option '-f' requires an argument"),
        (["nosuch"], "Command not found: nosuch"),
        (["info", "--output=xml", "x.raw"], "--output must be used with human or json"),
        (["check", "-r", "some", "x.raw"], "Unknown option value for -r"),
        (["info"], "Expecting one image file name"),
        (["map", "a.raw", "b.raw"], "Expecting one image file name"),
        (["rebase", "-u", "-b", "", "a.raw", "b.raw"], "Expecting one image file name"),
    ],
)
def test_bad_usage_is_one_line_and_exit_1(arctern_img, args, message):
    r = arctern_img(*args)
    assert r.rc == 1
    assert r.err.count("\n") == 1 and r.err.startswith("arctern-img: ")
    assert message in r.err
    assert "Traceback" not in r.err


def test_create_option_help_lists_the_drivers_options(arctern_img):
    r = arctern_img("create", "-f", "raw", "-o", "help")
    assert r.rc == 0
    assert r.out.startswith("Supported raw options:\n")
    assert "  size=<size>            - Virtual disk size\n" in r.out
    assert "preallocation=<str>" in r.out


@pytest.mark.parametrize(
    "args",
    [
        ["measure", "-O", "raw", "-o", "help"],
        # qemu-img lists the options before it looks at -c: help wins over the refusal
        ["convert", "-c", "-O", "raw", "-o", "help", "in.raw", "out.raw"],
    ],
)
def test_measure_and_convert_option_help_list_the_targets_options(arctern_img, tmp_path, args):
    r = arctern_img(*args)
    assert r.rc == 0, r.err
    assert r.out.startswith("Supported raw options:\n")
    assert not (tmp_path / "out.raw").exists()


def test_missing_image_is_could_not_open(arctern_img):
    for command in (["info"], ["map"], ["check"], ["bench", "-c", "1"], ["resize"]):
        extra = ["1M"] if command == ["resize"] else []
        r = arctern_img(*command, "missing.raw", *extra)
        assert r.rc == 1, command
        assert r.err.startswith("arctern-img: Could not open 'missing.raw': "), r.err
        assert r.err.count("\n") == 1


def test_info_human_and_json(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "a.raw", "4M")
    r = arctern_img("info", "-f", "raw", "a.raw")
    assert r.out.splitlines()[:3] == [
        "image: a.raw",
        "file format: raw",
        "virtual size: 4 MiB (4194304 bytes)",
    ]
    assert r.out.splitlines()[3].startswith("disk size: ")
    info = json.loads(arctern_img("info", "--output=json", "a.raw").out)
    assert info["virtual-size"] == 4194304
    assert info["format"] == "raw" and info["filename"] == "a.raw"
    assert info["dirty-flag"] is False
    assert info["actual-size"] == os.stat(tmp_path / "a.raw").st_blocks * 512


def test_map_reports_data_and_holes(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "a.raw", "4M")
    write_at(tmp_path / "a.raw", 1 << 20, b"\x01" * 65536)
    entries = [
        json.loads(line.rstrip(",]").lstrip("["))
        for line in arctern_img("map", "-f", "raw", "--output=json", "a.raw").out.splitlines()
    ]
    data = [e for e in entries if e["data"]]
    assert data == [
        {
            "start": 1 << 20,
            "length": 65536,
            "depth": 0,
            "present": True,
            "zero": False,
            "data": True,
            "offset": 1 << 20,
        }
    ]
    assert sum(e["length"] for e in entries) == 4 << 20
    human = arctern_img("map", "-f", "raw", "a.raw").out.splitlines()
    assert human == [
        "Offset          Length          Mapped to       File",
        "0x100000        0x10000         0x100000        a.raw",
    ]


def test_convert_copies_data_and_keeps_zero_runs_sparse(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "src.raw", "8M")
    payload = os.urandom(100000)
    write_at(tmp_path / "src.raw", 12345, payload)
    write_at(tmp_path / "src.raw", 4 << 20, bytes(1 << 20))  # allocated, but zeroes
    r = arctern_img("convert", "-f", "raw", "-O", "raw", "src.raw", "dst.raw")
    assert (r.rc, r.out, r.err) == (0, "", "")
    assert (tmp_path / "dst.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()
    assert os.stat(tmp_path / "dst.raw").st_blocks * 512 < 512 * 1024  # zeroes not written
    full = arctern_img("convert", "-S", "0", "-f", "raw", "-O", "raw", "src.raw", "full.raw")
    assert full.rc == 0
    assert os.stat(tmp_path / "full.raw").st_blocks * 512 >= 1 << 20


def test_convert_progress_and_existing_target(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "src.raw", "1M")
    write_at(tmp_path / "src.raw", 0, b"\xaa" * 4096)
    (tmp_path / "dst.raw").write_bytes(b"\xff" * (1 << 20))
    r = arctern_img("convert", "-p", "-n", "-f", "raw", "-O", "raw", "src.raw", "dst.raw")
    assert r.rc == 0
    assert r.out.startswith("    (0.00/100%)\r") and r.out.endswith("    (100.00/100%)\r\n")
    assert (tmp_path / "dst.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()


def test_convert_concatenates_sources(arctern_img, tmp_path):
    (tmp_path / "a.raw").write_bytes(b"a" * 65536)
    (tmp_path / "b.raw").write_bytes(b"b" * 65536)
    assert arctern_img("convert", "-f", "raw", "a.raw", "b.raw", "ab.raw").rc == 0
    assert (tmp_path / "ab.raw").read_bytes() == b"a" * 65536 + b"b" * 65536


def test_convert_compressed_refused_for_raw(arctern_img, tmp_path):
    (tmp_path / "a.raw").write_bytes(b"a" * 65536)
    r = arctern_img("convert", "-c", "-f", "raw", "-O", "raw", "a.raw", "c.raw")
    assert r.rc == 1
    assert r.err == "arctern-img: Compression not supported for this file format\n"


def test_compare_exit_codes_and_messages(arctern_img, tmp_path):
    (tmp_path / "a.raw").write_bytes(bytes(1 << 20))
    (tmp_path / "b.raw").write_bytes(bytes(1 << 20))
    same = arctern_img("compare", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert (same.rc, same.out) == (0, "Images are identical.\n")
    write_at(tmp_path / "b.raw", 1000, b"x")
    diff = arctern_img("compare", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert (diff.rc, diff.out) == (1, "Content mismatch at offset 512!\n")
    quiet = arctern_img("compare", "-q", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert (quiet.rc, quiet.out) == (1, "")
    missing = arctern_img("compare", "a.raw", "missing.raw")
    assert missing.rc == 2 and "Could not open 'missing.raw'" in missing.err


def test_compare_size_mismatch(arctern_img, tmp_path):
    (tmp_path / "a.raw").write_bytes(bytes(1 << 20))
    (tmp_path / "b.raw").write_bytes(bytes(2 << 20))
    r = arctern_img("compare", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert (r.rc, r.out) == (0, "Warning: Image size mismatch!\nImages are identical.\n")
    strict = arctern_img("compare", "-s", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert (strict.rc, strict.out) == (1, "Strict mode: Image size mismatch!\n")
    write_at(tmp_path / "b.raw", (1 << 20) + 4096, b"\x01")
    tail = arctern_img("compare", "-f", "raw", "-F", "raw", "a.raw", "b.raw")
    assert tail.rc == 1
    assert tail.out.endswith(f"Content mismatch at offset {(1 << 20) + 4096}!\n")


def test_resize_relative_and_shrink(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "a.raw", "1M")
    r = arctern_img("resize", "-f", "raw", "a.raw", "+1M")
    assert (r.rc, r.out) == (0, "Image resized.\n")
    assert os.path.getsize(tmp_path / "a.raw") == 2 << 20
    refused = arctern_img("resize", "-f", "raw", "a.raw", "-512k")
    assert refused.rc == 1 and "Use the --shrink option" in refused.err
    assert "warning: Shrinking" in refused.err
    shrunk = arctern_img("resize", "--shrink", "-f", "raw", "a.raw", "-512k")
    assert (shrunk.rc, shrunk.err) == (0, "")  # as qemu-img: the warning goes with the refusal
    assert os.path.getsize(tmp_path / "a.raw") == (2 << 20) - (512 << 10)
    assert arctern_img("resize", "-f", "raw", "a.raw", "3M").rc == 0
    assert os.path.getsize(tmp_path / "a.raw") == 3 << 20


def test_bench_output_and_writes(arctern_img, tmp_path):
    arctern_img("create", "-f", "raw", "a.raw", "1M")
    r = arctern_img(
        "bench",
        "-w",
        "-c",
        "100",
        "-s",
        "4k",
        "-S",
        "8k",
        "-o",
        "4k",
        "-d",
        "1",
        "--pattern=5",
        "--flush-interval=10",
        "-f",
        "raw",
        "a.raw",
    )
    lines = r.out.splitlines()
    assert r.rc == 0
    assert lines[0] == (
        "Sending 100 write requests, 4096 bytes each, 1 in parallel "
        "(starting at offset 4096, step size 8192)"
    )
    assert lines[1] == "Sending flush every 10 requests"
    assert lines[2].startswith("Run completed in ") and lines[2].endswith(" seconds.")
    data = (tmp_path / "a.raw").read_bytes()
    assert data[4096:8192] == b"\x05" * 4096 and data[8192:12288] == bytes(4096)
    reads = arctern_img("bench", "-c", "10", "-f", "raw", "a.raw").out.splitlines()[0]
    assert reads == (
        "Sending 10 read requests, 4096 bytes each, 64 in parallel "
        "(starting at offset 0, step size 4096)"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "0"], "Invalid request count specified"),
        (["--flush-interval=4"], "--flush-interval is only available in write tests"),
        (["--pattern=300", "-w"], "Invalid pattern byte specified"),
        (["-s", "xyz"], "Invalid buffer size specified"),
    ],
)
def test_bench_refuses_bad_parameters(arctern_img, tmp_path, args, message):
    arctern_img("create", "-f", "raw", "a.raw", "1M")
    r = arctern_img("bench", *args, "-f", "raw", "a.raw")
    assert r.rc == 1 and r.err == f"arctern-img: {message}\n"


def test_check_of_raw_is_63(arctern_img):
    arctern_img("create", "-f", "raw", "a.raw", "1M")
    r = arctern_img("check", "-f", "raw", "a.raw")
    assert r.rc == 63
    assert r.err == "arctern-img: This image format does not support checks\n"


def test_convert_of_many_chunks_keeps_every_byte(arctern_img, tmp_path):
    # Larger than the copy buffers several times over, with zero runs of every size between data.
    size = 9 * (2 << 20) + 12288
    content = bytearray(os.urandom(size))
    for start, length in ((0, 4096), (3 << 20, 5 << 20), (15 << 20, 1000), (size - 7000, 7000)):
        content[start : start + length] = bytes(length)
    (tmp_path / "src.raw").write_bytes(content)
    assert arctern_img("convert", "-f", "raw", "-O", "qcow2", "src.raw", "mid.qcow2").rc == 0
    assert arctern_img("convert", "-O", "raw", "mid.qcow2", "dst.raw").rc == 0
    assert (tmp_path / "dst.raw").read_bytes() == bytes(content)


def test_convert_force_share_and_target_is_zero(arctern_img, tmp_path):
    (tmp_path / "src.raw").write_bytes(b"\x01" * 4096 + bytes(8192))
    (tmp_path / "dst.raw").write_bytes(b"\xff" * 12288)
    r = arctern_img("convert", "-U", "-f", "raw", "-O", "raw", "src.raw", "new.raw")
    assert (r.rc, r.err) == (0, "")
    assert (tmp_path / "new.raw").read_bytes() == (tmp_path / "src.raw").read_bytes()
    # --target-is-zero: the user vouches for the target, so zero runs are not written
    r = arctern_img(
        "convert", "-n", "--target-is-zero", "-f", "raw", "-O", "raw", "src.raw", "dst.raw"
    )
    assert r.rc == 0
    assert (tmp_path / "dst.raw").read_bytes() == b"\x01" * 4096 + b"\xff" * 8192
    refused = arctern_img("convert", "--target-is-zero", "-O", "raw", "src.raw", "x.raw")
    assert refused.err == "arctern-img: --target-is-zero requires use of -n flag\n"


@pytest.mark.parametrize("option", ["--image-opts", "--object=secret,id=s0"])
def test_unsupported_qemu_img_options_are_refused_not_ignored(arctern_img, option):
    r = arctern_img("info", option, "x.raw")
    assert r.rc == 1
    assert r.err.startswith(f"arctern-img: unrecognized option '{option.split('=')[0]}'")


class _CountingBackend:
    """A backend whose requests wait until ``depth`` of them are in flight at once.

    With fewer in parallel the barrier times out and the request fails.
    """

    length = 1 << 20

    def __init__(self, depth: int) -> None:
        self.barrier = threading.Barrier(depth, timeout=10)
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.offsets: list[int] = []
        self.flushed_with_in_flight: list[int] = []

    def preadinto(self, offset, buf):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.offsets.append(offset)
        self.barrier.wait()
        with self.lock:
            self.in_flight -= 1

    pwrite = preadinto

    def flush(self):
        self.flushed_with_in_flight.append(self.in_flight)


@pytest.mark.parametrize("depth", [1, 4, 16])
def test_bench_keeps_depth_requests_in_flight(depth):
    from arctern.cli.img_bench import BenchParams, run_bench

    backend = _CountingBackend(depth)
    p = BenchParams(count=64, depth=depth, bufsize=4096, step=4096, write=True, flush_interval=32)
    run_bench(backend, p)
    assert backend.most_in_flight == depth
    assert sorted(backend.offsets) == [i * 4096 for i in range(64)]
    assert backend.flushed_with_in_flight == [0, 0]  # drained before each flush


def test_bench_with_depth_writes_every_request(arctern_img, tmp_path):
    arctern_img("create", "-f", "qcow2", "a.qcow2", "1M")
    r = arctern_img("bench", "-w", "-c", "256", "-d", "8", "--pattern=7", "a.qcow2")
    assert r.rc == 0, r.err
    assert "8 in parallel" in r.out
    dump = arctern_img("convert", "-O", "raw", "a.qcow2", "a.raw")
    assert dump.rc == 0
    # qemu-img's walk wraps before the last buffer-sized piece: it is never written.
    assert (tmp_path / "a.raw").read_bytes() == b"\x07" * ((1 << 20) - 4096) + bytes(4096)
