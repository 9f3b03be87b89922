"""``arctern-img check``: consistency check with qemu-img's reports and exit codes.

Exit codes, as qemu-img: 0 clean, 1 the check could not complete, 2 corruptions,
3 leaks only, 63 the format has no check.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from arctern.block.driver import CheckResult
from arctern.errors import ArcternError, UsageError

from .img_common import HELP_HINT, one_filename, open_image, output_format, parse_args
from .img_json import dumps

EXIT_CLEAN, EXIT_FAILED, EXIT_CORRUPT, EXIT_LEAKS, EXIT_NO_CHECK = 0, 1, 2, 3, 63


def check_report(filename: str, fmt: str, result: CheckResult) -> dict[str, Any]:
    """The QAPI ImageCheck of ``result``: counters only when nonzero (check-errors always)."""
    report: dict[str, Any] = {
        "filename": filename,
        "format": fmt,
        "check-errors": result.check_errors,
    }
    optional = (
        ("image-end-offset", result.image_end_offset),
        ("corruptions", result.corruptions),
        ("leaks", result.leaks),
        ("corruptions-fixed", result.corruptions_fixed),
        ("leaks-fixed", result.leaks_fixed),
        ("total-clusters", result.total_clusters),
        ("allocated-clusters", result.allocated_clusters),
        ("fragmented-clusters", result.fragmented_clusters),
        ("compressed-clusters", result.compressed_clusters),
    )
    report.update((key, value) for key, value in optional if value)
    return report


def human_report(report: dict[str, Any]) -> str:
    """qemu-img check's human summary of one report."""
    lines: list[str] = []
    corruptions = report.get("corruptions", 0)
    leaks = report.get("leaks", 0)
    errors = report["check-errors"]
    if not (corruptions or leaks or errors):
        lines.append("No errors were found on the image.")
    if corruptions:
        lines += [
            "",
            f"{corruptions} errors were found on the image.",
            "Data may be corrupted, or further writes to the image may corrupt it.",
        ]
    if leaks:
        lines += [
            "",
            f"{leaks} leaked clusters were found on the image.",
            "This means waste of disk space, but no harm to data.",
        ]
    if errors:
        lines += ["", f"{errors} internal errors have occurred during the check."]
    total = report.get("total-clusters", 0)
    allocated = report.get("allocated-clusters", 0)
    if total and allocated:
        fragmented = report.get("fragmented-clusters", 0) * 100.0 / allocated
        compressed = report.get("compressed-clusters", 0) * 100.0 / allocated
        lines.append(
            f"{allocated}/{total} = {allocated * 100.0 / total:0.2f}% allocated, "
            f"{fragmented:0.2f}% fragmented, {compressed:0.2f}% compressed clusters"
        )
    if report.get("image-end-offset"):
        lines.append(f"Image end offset: {report['image-end-offset']}")
    return "\n".join(lines)


def _run_check(driver: Any, fix: str) -> CheckResult | None:
    result = driver.check(fix)
    if result is not None:
        for message in result.messages:
            print(message, file=sys.stderr)
    return result


def cmd_check(args: Sequence[str]) -> int:
    opts, rest = parse_args(args, "f:hqr:T:U", ["help", "output=", "repair=", "force-share"])
    fmt, fix, quiet, force_share, output, cache = None, "", False, False, "human", "writeback"
    for opt, value in opts:
        if opt == "-f":
            fmt = value
        elif opt in ("-r", "--repair"):
            if value not in ("leaks", "all"):
                raise UsageError(
                    f"Unknown option value for -r (expecting 'leaks' or 'all'): {value}; "
                    f"{HELP_HINT}"
                )
            fix = value
        elif opt == "-q":
            quiet = True
        elif opt == "-T":
            cache = value
        elif opt in ("-U", "--force-share"):
            force_share = True
        elif opt == "--output":
            output = output_format(value)
        elif opt in ("-h", "--help"):
            print(
                "usage: arctern-img check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] "
                "[-T src_cache] [-U] filename"
            )
            return 0
    filename = one_filename(rest)
    if fix and force_share:
        raise UsageError("--force-share/-U is not allowed when repairing")
    backend = open_image(
        filename,
        fmt=fmt,
        read_only=not fix,
        force_share=force_share,
        cache=cache,
        for_repair=bool(fix),
        discard="unmap" if fix else "ignore",  # qemu-img discards the clusters a repair frees
    )
    try:
        return _check_open_image(filename, backend, fix, quiet, output)
    finally:
        backend.close()


def _check_open_image(filename: str, backend: Any, fix: str, quiet: bool, output: str) -> int:
    driver = backend.node.driver
    fmt = backend.node.format_name
    try:
        result = _run_check(driver, fix)
        if result is None:
            print("arctern-img: This image format does not support checks", file=sys.stderr)
            return EXIT_NO_CHECK
        if result.leaks_fixed or result.corruptions_fixed:
            if output == "human" and not quiet:
                print(
                    "The following inconsistencies were found and repaired:\n\n"
                    f"    {result.leaks_fixed} leaked clusters\n"
                    f"    {result.corruptions_fixed} corruptions\n\n"
                    "Double checking the fixed image now..."
                )
            fixed = (result.leaks_fixed, result.corruptions_fixed)
            result = _run_check(driver, "")
            result.leaks_fixed, result.corruptions_fixed = fixed
    except ArcternError as exc:
        print(f"arctern-img: Check failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    report = check_report(filename, fmt, result)
    if not quiet:
        print(dumps(report) if output == "json" else human_report(report))
    if result.check_errors:
        print("arctern-img: Check failed", file=sys.stderr)
        return EXIT_FAILED
    if result.corruptions:
        return EXIT_CORRUPT
    return EXIT_LEAKS if result.leaks else EXIT_CLEAN
