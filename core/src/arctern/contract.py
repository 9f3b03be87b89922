"""Required hooks of plugin contracts.

A contract is a base class (BlockDriver, CPU, MachineType, Device,
MigrationTransport) whose methods a plugin class implements. Methods marked
with :func:`required` must be defined by the plugin class itself (or by an
intermediate class of the plugin): inheriting the base's placeholder does
not count. There is deliberately no silent default for a required hook; a
driver with nothing to do implements it as an honest no-op.
"""

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def required(func: F) -> F:
    """Mark a contract method as a hook every implementation must define."""
    func.__arctern_required__ = True  # type: ignore[attr-defined]
    return func


def required_hooks(contract: type) -> list[str]:
    """Names of the required hooks declared by ``contract`` and its bases."""
    names: list[str] = []
    for klass in reversed(contract.__mro__):
        for name, value in vars(klass).items():
            func = getattr(value, "__func__", value)
            if getattr(func, "__arctern_required__", False) and name not in names:
                names.append(name)
    return names


def missing_hooks(cls: type, contract: type) -> list[str]:
    """Required hooks of ``contract`` that ``cls`` leaves to the placeholder."""
    missing = []
    for name in required_hooks(contract):
        impl = getattr(cls, name, None)
        func = getattr(impl, "__func__", impl)
        if func is None or getattr(func, "__arctern_required__", False):
            missing.append(name)
    return missing
