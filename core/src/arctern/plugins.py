"""Plugin discovery and registration.

Two layers, each with one job:

* stevedore finds the entry points of each plugin kind (one namespace per
  kind, see :data:`KINDS`); what it found is remembered between runs by
  :mod:`arctern.plugin_index` until anything installed changes. The build
  configuration applies *before* anything is imported (a disabled plugin is
  never imported) and a plugin that fails to import is isolated;
* pluggy holds the contract (:mod:`arctern.hookspecs`): every loaded plugin is
  registered with a PluginManager that validates its hookimpls.

The classes a plugin returns from its registration hooks are then checked
against their contract (:mod:`arctern.contract`). A broken plugin is reported
and skipped, the others load; in strict mode any broken plugin is an error.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from arctern import hookspecs, plugin_index
from arctern.config import BuildConfig
from arctern.contract import missing_hooks
from arctern.errors import NotFoundError, PluginError, PluginRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provision:
    """One registration hook: what it returns and which contract that must meet."""

    hook: str
    contract: str  # "module:Class", imported lazily
    label: str  # how a user names one such class: "block driver"

    def contract_class(self) -> type:
        module, _, name = self.contract.partition(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Kind:
    name: str
    namespace: str
    provisions: tuple[Provision, ...]


BLOCK_DRIVERS = Provision(
    "arctern_block_drivers", "arctern.block.driver:BlockDriver", "block driver"
)
CPU_MODELS = Provision("arctern_cpu_models", "arctern.cpu.base:CPU", "CPU model")
MACHINE_TYPES = Provision(
    "arctern_machine_types", "arctern.machine.machine:MachineType", "machine type"
)
DEVICES = Provision("arctern_devices", "arctern.machine.device:Device", "device")
TRANSPORTS = Provision(
    "arctern_migration_transports",
    "arctern.migration.transport:MigrationTransport",
    "migration transport",
)

KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("block", "arctern.block_drivers", (BLOCK_DRIVERS,)),
        Kind("target", "arctern.targets", (CPU_MODELS, MACHINE_TYPES)),
        Kind("device", "arctern.devices", (DEVICES,)),
        Kind("migration", "arctern.migration_transports", (TRANSPORTS,)),
    )
}

ENABLED, DISABLED, FAILED, REFUSED = "enabled", "disabled", "failed", "refused"


@dataclass
class PluginRecord:
    """What ``arctern-plugins list`` shows about one discovered plugin."""

    kind: str
    name: str
    distribution: str
    version: str
    status: str = ENABLED
    reason: str = ""
    provides: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.distribution} {self.version}".strip()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "provides": list(self.provides),
        }


def _table(provision: Provision) -> property:
    return property(
        lambda self: self.provided[provision.hook],
        doc=f"Every {provision.label} of the enabled plugins, by name.",
    )


def _finder(provision: Provision):
    def find(self: Registry, name: str) -> type:
        return self._lookup(provision, name)

    find.__doc__ = f"The {provision.label} called ``name``; NotFoundError if there is none."
    return find


class Registry:
    """The plugins of one process, and the classes they provide, by kind and name."""

    def __init__(self, config: BuildConfig | None = None, *, strict: bool | None = None):
        self.config = config if config is not None else BuildConfig.load()
        self.strict = self.config.strict if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.provided: dict[str, dict[str, type]] = {
            p.hook: {} for kind in KINDS.values() for p in kind.provisions
        }

    # --- discovery -------------------------------------------------------

    def discover(self, kinds: Iterable[str] | None = None) -> Registry:
        """Find, load and register the enabled plugins of the given kinds (default: all)."""
        found = plugin_index.entry_points([kind.namespace for kind in KINDS.values()])
        for kind_name in kinds or KINDS:
            kind = KINDS[kind_name]
            self._discover_kind(kind, found[kind.namespace])
        if self.strict:
            broken = [r for r in self.records if r.status in (FAILED, REFUSED)]
            if broken:
                error = PluginRefused if all(r.status == REFUSED for r in broken) else PluginError
                raise error("; ".join(r.reason for r in broken))
        return self

    def _discover_kind(self, kind: Kind, entry_points: list[plugin_index.EntryPointInfo]) -> None:
        # The configuration applies before any import: a disabled plugin is never imported.
        enabled = []
        for ep in entry_points:
            record = PluginRecord(kind.name, ep.name, ep.distribution, ep.version)
            if not self.config.is_enabled(kind.name, ep.name):
                record.status = DISABLED
                record.reason = self.config.why_disabled(kind.name, ep.name)
            else:
                enabled.append((ep, record))
            self.records.append(record)
        for ep, record in enabled:
            try:
                plugin = plugin_index.load(ep.value)
            except Exception as exc:  # a broken plugin is reported; the others still load
                self._fail(record, f"failed to load: {type(exc).__name__}: {exc}")
                continue
            self._register(kind, record, plugin)

    # --- registration ----------------------------------------------------

    def register_plugin(
        self,
        plugin: object,
        *,
        kind: str,
        name: str,
        distribution: str = "(in-process)",
        version: str = "",
    ) -> PluginRecord:
        """Register a plugin object directly, without an entry point (tests, embedding)."""
        record = PluginRecord(kind, name, distribution, version)
        self.records.append(record)
        if not self.config.is_enabled(kind, name):
            record.status = DISABLED
            record.reason = self.config.why_disabled(kind, name)
            return record
        self._register(KINDS[kind], record, plugin)
        if self.strict and record.status in (FAILED, REFUSED):
            raise (PluginRefused if record.status == REFUSED else PluginError)(record.reason)
        return record

    def _register(self, kind: Kind, record: PluginRecord, plugin: object) -> None:
        plugin_id = f"{kind.name}:{record.name}"
        try:
            self.pm.register(plugin, name=plugin_id)
        except Exception as exc:  # pluggy validation or a plugin's own error
            self._fail(record, f"rejected by the plugin manager: {exc}")
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=plugin_id)
            self._fail(record, str(exc))
            return
        accepted: list[tuple[Provision, type]] = []
        for provision in kind.provisions:
            try:
                classes = self._call_own_hook(plugin_id, provision.hook)
            except Exception as exc:
                self.pm.unregister(name=plugin_id)
                self._fail(record, f"{provision.hook} raised {type(exc).__name__}: {exc}")
                return
            for cls in classes:
                problem = self._contract_problem(provision, cls)
                if problem:
                    self.pm.unregister(name=plugin_id)
                    record.status = REFUSED
                    record.reason = (
                        f"arctern: {provision.label} '{_class_name(cls)}' ({record.label}) "
                        f"refused: {problem}"
                    )
                    log.warning("%s", record.reason)
                    return
                accepted.append((provision, cls))
        for provision, cls in accepted:
            self.provided[provision.hook].setdefault(cls.name, cls)
            record.provides.append(cls.name)

    def _call_own_hook(self, plugin_id: str, hook_name: str) -> list[type]:
        caller = getattr(self.pm.hook, hook_name)
        classes: list[type] = []
        for impl in caller.get_hookimpls():
            if impl.plugin_name == plugin_id:
                result = impl.function()
                classes.extend(result or ())
        return classes

    @staticmethod
    def _contract_problem(provision: Provision, cls: Any) -> str:
        contract = provision.contract_class()
        if not isinstance(cls, type) or not issubclass(cls, contract):
            return f"{cls!r} is not a subclass of {contract.__module__}.{contract.__name__}"
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            return "class attribute 'name' is missing"
        missing = missing_hooks(cls, contract)
        if missing:
            plural = "s" if len(missing) > 1 else ""
            return f"missing required hook{plural} {', '.join(missing)}"
        return ""

    def _fail(self, record: PluginRecord, why: str) -> None:
        record.status = FAILED
        record.reason = f"arctern: {record.kind} plugin '{record.name}' ({record.label}) {why}"
        log.warning("%s", record.reason)

    # --- lookup ----------------------------------------------------------

    def _lookup(self, provision: Provision, name: str) -> type:
        table = self.provided[provision.hook]
        if name in table:
            return table[name]
        known = ", ".join(sorted(table)) or "none"
        raise NotFoundError(f"unknown {provision.label} '{name}' (available: {known})")

    # Tables of what the enabled plugins provide, by name, and lookups that
    # raise NotFoundError listing what is available.
    block_drivers = _table(BLOCK_DRIVERS)
    cpu_models = _table(CPU_MODELS)
    machine_types = _table(MACHINE_TYPES)
    devices = _table(DEVICES)
    transports = _table(TRANSPORTS)
    block_driver = _finder(BLOCK_DRIVERS)
    cpu_model = _finder(CPU_MODELS)
    machine_type = _finder(MACHINE_TYPES)
    device = _finder(DEVICES)
    transport = _finder(TRANSPORTS)

    # --- events ----------------------------------------------------------

    def notify(self, event: str, **kwargs: Any) -> None:
        """Call an event hook on every plugin; an observer's exception is logged, not raised."""
        for impl in getattr(self.pm.hook, event).get_hookimpls():
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, event)


def _class_name(cls: Any) -> str:
    name = getattr(cls, "name", None)
    return name if isinstance(name, str) and name else getattr(cls, "__name__", repr(cls))


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, discovered on first use with the user's configuration."""
    global _default
    if _default is None:
        _default = Registry().discover()
    return _default


def set_default_registry(registry: Registry | None) -> None:
    """Replace the process-wide registry (CLIs after parsing --config; tests)."""
    global _default
    _default = registry


__all__ = [
    "KINDS",
    "PluginRecord",
    "Registry",
    "default_registry",
    "set_default_registry",
]
