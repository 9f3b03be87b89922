"""arctern-plugins: list the discovered plugins and check a distribution against its contracts."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from arctern.config import BuildConfig
from arctern.errors import UsageError
from arctern.plugins import DISABLED, ENABLED, Registry

from .common import run_cli


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, as every Arctern tool
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="arctern-plugins", description=__doc__)
    parser.add_argument("--config", help="build configuration file (default: arctern.toml)")
    parser.add_argument(
        "--strict-plugins", action="store_true", help="any plugin failure is an error"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="every discovered plugin and its status")
    lister.add_argument("--output", choices=("human", "json"), default="human")
    checker = sub.add_parser("check", help="validate the plugins of one distribution")
    checker.add_argument("distribution")
    return parser


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    config = BuildConfig.load(args.config)
    if args.command == "check":
        return _check(config, args.distribution)
    registry = Registry(config, strict=args.strict_plugins or None).discover()
    records = sorted(registry.records, key=lambda r: (r.kind, r.name))
    if args.output == "json":
        json.dump([r.as_dict() for r in records], sys.stdout, indent=4)
        print()
        return 0
    for r in records:
        provides = ", ".join(r.provides) or "-"
        print(f"{r.kind:<10} {r.name:<12} {r.label:<32} {r.status:<9} {provides}")
        if r.reason and r.status != ENABLED:
            print(f"{'':10} {r.reason}")
    return 0


def _check(config: BuildConfig, distribution: str) -> int:
    """Load every plugin of one distribution, even if the configuration disables it."""
    config.enable.clear()
    config.disable.clear()
    registry = Registry(config, strict=False).discover()
    mine = [r for r in registry.records if r.distribution.lower() == distribution.lower()]
    if not mine:
        raise UsageError(f"no plugin of distribution '{distribution}' is installed")
    bad = 0
    for r in mine:
        if r.status in (ENABLED, DISABLED):
            print(f"{r.kind} plugin '{r.name}' ({r.label}): ok, provides {', '.join(r.provides)}")
        else:
            bad += 1
            print(r.reason, file=sys.stderr)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("arctern-plugins", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
