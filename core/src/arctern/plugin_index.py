"""Which entry points each plugin namespace has, remembered between runs.

stevedore finds a namespace's entry points by reading the metadata of every
installed distribution through importlib.metadata. That is sound but costs
about 50 ms at every start (importlib.metadata, email and zipfile imported,
every distribution's metadata parsed): more than qemu-img needs for a whole
command. The index keeps what a stevedore scan found, per namespace: each entry
point's name, its target (``module:attr``) and the distribution and version
that declare it, in a JSON file under the user's cache directory.

A stored index is used only while its fingerprint still matches: the same
interpreter and ``sys.path``, the same distribution metadata directories on
it, and the same modification time (in nanoseconds) and size of every
``entry_points.txt`` in them, much as stevedore's own cache checks. pip changes
it on every install, upgrade and removal: each adds or removes a
``NAME-VERSION.dist-info`` directory. Anything else (no cache
directory, an unreadable or damaged file) means a fresh scan, never an error.
``ARCTERN_PLUGIN_CACHE=off`` turns the index off; ``ARCTERN_CACHE_DIR`` moves it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zlib
from collections.abc import Sequence
from typing import NamedTuple

FORMAT = 1
METADATA_DIRS = (".dist-info", ".egg-info", ".egg")


class EntryPointInfo(NamedTuple):
    """One entry point of a plugin namespace and the distribution declaring it."""

    name: str
    value: str  # "module" or "module:attr.attr"
    distribution: str
    version: str


def entry_points(namespaces: Sequence[str]) -> dict[str, list[EntryPointInfo]]:
    """The entry points of each namespace, from the index if it is current."""
    path = _index_path()
    if path is None:
        return scan(namespaces)
    fingerprint = _fingerprint()
    stored = _read(path, fingerprint, namespaces)
    if stored is not None:
        return stored
    found = scan(namespaces)
    _write(path, fingerprint, found)
    return found


def scan(namespaces: Sequence[str]) -> dict[str, list[EntryPointInfo]]:
    """List the entry points with stevedore (no plugin is imported)."""
    import importlib.metadata

    from stevedore.extension import ExtensionManager

    declared = importlib.metadata.entry_points()  # one pass over every distribution
    found: dict[str, list[EntryPointInfo]] = {}
    for namespace in namespaces:
        dists = {}
        for ep in declared.select(group=namespace):
            if ep.dist is not None:
                dists[(ep.name, ep.value)] = (ep.dist.metadata["Name"], ep.dist.version)
        lister = ExtensionManager.make_test_instance([], namespace=namespace)
        listed = [(ep.name, ep.value) for ep in lister.list_entry_points()]
        if set(listed) != set(dists):
            # stevedore's on-disk cache stamps files with 32-bit float mtimes, so an
            # entry_points.txt rewritten within about two minutes looks unchanged to it
            # (pip install -e run again, say): the metadata it caches wins then.
            listed = list(dists)
        found[namespace] = [
            EntryPointInfo(name, value, *dists.get((name, value), ("(unknown)", "")))
            for name, value in listed
        ]
    return found


def load(value: str) -> object:
    """Import the object an entry point names (``module:attr.attr``), as EntryPoint.load."""
    module_name, _, attrs = value.split("[", 1)[0].partition(":")  # extras need nothing here
    target = importlib.import_module(module_name.strip())
    for attr in filter(None, attrs.strip().split(".")):
        target = getattr(target, attr)
    return target


def _index_path() -> str | None:
    if os.environ.get("ARCTERN_PLUGIN_CACHE", "").lower() in ("0", "off", "no", "false"):
        return None
    directory = os.environ.get("ARCTERN_CACHE_DIR")
    if not directory:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        directory = os.path.join(base, "arctern")
    # Keyed by sys.path as written: "" (the working directory) names one file wherever
    # a program starts, and the fingerprint tells whether that directory matters.
    key = "\0".join([sys.executable, sys.prefix, *sys.path])
    return os.path.join(directory, f"plugin-index-{zlib.crc32(key.encode()):08x}.json")


def _fingerprint() -> list[list]:
    """What the entry points on sys.path are read from, with their stamps.

    For each path entry: a file (a zip) by its own stamp; a directory by the
    name of every distribution's metadata directory in it and the stamp of its
    entry_points.txt. Not by the directory's own mtime, which every file written
    into a working directory on the path would change.
    """
    fingerprint: list[list] = [[sys.executable], [sys.prefix]]
    for entry in sys.path:  # recorded as written: "" stays "" in whatever directory
        where = os.path.abspath(entry or ".")
        try:
            with os.scandir(where) as listing:
                names = sorted(item.name for item in listing if item.name.endswith(METADATA_DIRS))
        except NotADirectoryError:
            fingerprint.append([entry, *_stamp(where)])
            continue
        except OSError:
            fingerprint.append([entry])
            continue
        fingerprint.append([entry, *names])
        for name in names:
            inner = "EGG-INFO" if name.endswith(".egg") else ""
            fingerprint.append(
                [name, *_stamp(os.path.join(where, name, inner, "entry_points.txt"))]
            )
    return fingerprint


def _stamp(path: str) -> tuple[int, int]:
    try:
        status = os.stat(path)
    except OSError:
        return -1, -1
    return status.st_mtime_ns, status.st_size


def _read(
    path: str, fingerprint: list[list], namespaces: Sequence[str]
) -> dict[str, list[EntryPointInfo]] | None:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if data["format"] != FORMAT or data["fingerprint"] != fingerprint:
            return None
        groups = data["namespaces"]
        return {ns: [EntryPointInfo(*map(str, item)) for item in groups[ns]] for ns in namespaces}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: str, fingerprint: list[list], found: dict[str, list[EntryPointInfo]]) -> None:
    """Store the index atomically (concurrent starts may race: the last rename wins)."""
    data = {"format": FORMAT, "fingerprint": fingerprint, "namespaces": found}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
