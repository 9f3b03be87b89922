"""Run every arctern-img subcommand (and arctern-io) on one image, in one process.

Used by test_hostile_images.py under a memory limit and a timeout. Prints one
JSON object: command -> [exit code, stdout, stderr].
"""

import contextlib
import io
import json
import shutil
import sys

from arctern.cli import img
from arctern.cli import io as qio

COMMANDS = [
    ["img", "info", "{i}"],
    ["img", "info", "--output=json", "--backing-chain", "{i}"],
    ["img", "check", "{i}"],
    ["img", "check", "--output=json", "{i}"],
    ["img", "map", "{i}"],
    ["img", "map", "--output=json", "{i}"],
    ["img", "convert", "-O", "raw", "{i}", "{d}/out.raw"],
    ["img", "convert", "-O", "qcow2", "{i}", "{d}/out.qcow2"],
    ["img", "compare", "{i}", "{i}"],
    ["img", "measure", "-O", "qcow2", "{i}"],
    ["img", "convert", "-C", "-O", "qcow2", "{i}", "{d}/out-offload.qcow2"],
    ["img", "amend", "-o", "compat=0.10", "{c}"],
    ["img", "amend", "-o", "lazy_refcounts=on", "{c}"],
    ["img", "rebase", "-b", "", "{c}"],
    ["img", "rebase", "-u", "-b", "", "{c}"],
    ["img", "bench", "-c", "64", "{i}"],
    ["img", "bench", "-w", "-c", "64", "{c}"],
    ["img", "resize", "{c}", "+1M"],
    ["img", "create", "-f", "qcow2", "-b", "{i}", "-F", "qcow2", "{d}/overlay.qcow2"],
    ["img", "check", "-r", "all", "{c}"],
    ["io", "-c", "read 0 64k", "-c", "write -P 1 0 4k", "-c", "map", "{c}"],
]


def main(image: str, workdir: str) -> None:
    results = {}
    for command in COMMANDS:
        copy = f"{workdir}/copy.img"
        shutil.copyfile(image, copy)
        args = [a.format(i=image, c=copy, d=workdir) for a in command[1:]]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = (img.main if command[0] == "img" else qio.main)(args)
        results[" ".join(command)] = [rc, out.getvalue()[:2000], err.getvalue()[:2000]]
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
