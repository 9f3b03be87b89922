"""The listings of arctern-system: ``-M help``, ``-M NAME,help``, ``-device help``,
``-device NAME,help``, ``-cpu help`` and ``-d help``, laid out as qemu-system's."""

from __future__ import annotations

import argparse
from typing import Any

from arctern.errors import MachineError
from arctern.machine.launch import option_context
from arctern.plugins import Registry
from arctern.qemu_opts import parse_opts

from .debug_log import LOG_ITEMS
from .system_options import DEFAULT_MACHINE, machine_options

_HELP = ("help", "?")


def _machine_help(registry) -> str:
    lines = ["Supported machines are:"]
    for name, cls in sorted(registry.machine_types.items()):
        default = " (default)" if name == DEFAULT_MACHINE else ""
        lines.append(f"{name:<20} {cls.description}{default}")
    return "\n".join(lines)


def _props_help(title: str, props: dict) -> str:
    lines = [f"{title} options:"]
    for name, prop in sorted(props.items()):
        default = "" if prop.default is None else f" (default: {_show(prop.default)})"
        lines.append(
            f"  {name}=<{prop.type_name or prop.kind}>"
            f"{' - ' + prop.description if prop.description else ''}{default}"
        )
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as QEMU lists bool defaults
    return f'"{value}"' if isinstance(value, str) else str(value)


def _device_help(registry) -> str:
    lines = []
    for name, cls in sorted(registry.devices.items()):
        if not cls.user_creatable:
            continue
        bus = f", bus {cls.bus_type}" if cls.bus_type else ""
        desc = f', desc "{cls.description}"' if cls.description else ""
        lines.append(f'name "{name}"{bus}{desc}')
    return "\n".join(lines)


def _cpu_help(registry) -> str:
    lines = ["Available CPUs:"]
    for name, cls in sorted(registry.cpu_models.items()):
        lines.append(f"{cls.arch or '?':<4} {name:<24} {getattr(cls, 'description', '')}".rstrip())
    return "\n".join(lines)


def _log_help() -> str:
    lines = ["Log items (comma separated):"]
    lines += [f"{item:<15} {text}" for item, text in LOG_ITEMS.items()]
    return "\n".join(lines)


def help_text(args: argparse.Namespace, registry: Registry) -> str | None:
    """The text of ``-M help``, ``-device help``, ``-cpu help``, ``-d help``, if asked."""
    machine = machine_options(args)
    if machine["type"] in _HELP:
        return _machine_help(registry)
    if machine.get("help") == "on":
        cls = _lookup(registry.machine_types, machine["type"], "unsupported machine type")
        return _props_help(f"{cls.name}-machine", cls.options)
    if args.cpu in _HELP:
        return _cpu_help(registry)
    if args.log_items in _HELP:
        return _log_help()
    for text in args.devices:
        opts = parse_opts(text, "driver")
        if opts["driver"] in _HELP:
            return _device_help(registry)
        if opts.get("help") == "on":
            with option_context(f"-device {text}"):
                cls = _lookup(
                    registry.devices,
                    opts["driver"],
                    f"'{opts['driver']}' is not a valid device model name",
                )
            return _props_help(cls.name, cls.properties)
    return None


def _lookup(table: dict, name: str, message: str) -> type:
    if name not in table:
        raise MachineError(message)
    return table[name]
