"""Opening and creating images: protocol node, format probing, backing chains."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arctern.block import permissions
from arctern.block.backend import BlockBackend
from arctern.block.node import BlockNode
from arctern.block.options import CacheMode, cache_mode, detect_zeroes_mode, discard_mode
from arctern.errors import (
    USER_WARNINGS_LOGGER,
    ArcternError,
    BlockError,
    ImageFormatError,
    UsageError,
)

if TYPE_CHECKING:
    from arctern.block.driver import BlockDriver
    from arctern.plugins import Registry

log = logging.getLogger(__name__)
#: Warnings QEMU prints for the user as ``WARNING: ...`` lines; the tools show them so.
user_warnings = logging.getLogger(USER_WARNINGS_LOGGER)

PROBED_RAW_WARNING = (
    "Image format was not specified for '%s' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, write "
    "operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions."
)

#: How many images a backing chain may hold, the top image included.
MAX_CHAIN_LENGTH = 256
#: How many bytes format drivers get to look at when probing (QEMU's BLOCK_PROBE_BUF_SIZE).
PROBE_SIZE = 2048
DEFAULT_PROTOCOL = "file"


@dataclass(frozen=True)
class _Settings:
    """What every node of one open_image call shares."""

    registry: Registry
    active: bool
    cache: CacheMode
    discard: str
    force_share: bool
    for_repair: bool = False


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from arctern.plugins import default_registry

    return default_registry()


def _split_options(options: dict[str, Any] | None) -> tuple[dict, dict, dict]:
    """Split ``{"l2-cache-size": .., "file.locking": .., "backing.x": ..}`` by node."""
    own: dict[str, Any] = {}
    children: dict[str, dict[str, Any]] = {"file": {}, "backing": {}}
    for key, value in (options or {}).items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix in children:
            children[prefix][rest] = value
        else:
            own[key] = value
    return own, children["file"], children["backing"]


def protocol_driver(filename: str, registry: Registry) -> tuple[type[BlockDriver], str]:
    """The protocol driver for ``filename`` and the name to give it.

    ``PROTO:rest`` selects a registered protocol driver PROTO (``file:`` is
    stripped); anything else is a path for the file driver.
    """
    prefix, colon, rest = filename.partition(":")
    if colon and prefix != DEFAULT_PROTOCOL:
        cls = registry.block_drivers.get(prefix)
        if cls is not None and cls.protocol:
            return cls, filename
    if colon and prefix == DEFAULT_PROTOCOL:
        filename = rest
    return registry.block_driver(DEFAULT_PROTOCOL), filename


def _open_driver(node: BlockNode, options: dict[str, Any], action: str = "open") -> None:
    """Run the driver's open(), then take its locks if the node is active.

    A driver whose open() fails is not closed (it cleans up after itself, as
    in QEMU); the node's children are.
    """
    try:
        node.driver.open(options)
    except BaseException as exc:
        node.close_children()
        if isinstance(exc, OSError):
            raise BlockError(
                f"Could not {action} '{node.filename}': {exc.strerror or exc}"
            ) from exc
        raise
    if node.active:
        try:
            node.driver.set_permissions(node.perm, node.shared)
        except BaseException:
            node.close()
            raise


def probe_format(header: bytes, filename: str, registry: Registry) -> type[BlockDriver]:
    """The format driver whose probe() is surest about ``header`` (the image's first bytes)."""
    best: tuple[int, type[BlockDriver]] | None = None
    for cls in registry.block_drivers.values():
        if cls.protocol:
            continue
        try:
            score = cls.probe(header, filename)
        except Exception:
            log.exception("block driver '%s' failed to probe '%s'", cls.name, filename)
            continue
        if score > 0 and (best is None or score > best[0]):
            best = (score, cls)
    if best is None:
        raise ImageFormatError(f"Could not determine the image format of '{filename}'")
    return best[1]


def _probe(file: BlockNode, registry: Registry) -> type[BlockDriver]:
    header = bytearray(min(PROBE_SIZE, file.getlength()))
    file.pread(0, memoryview(header))
    return probe_format(bytes(header), file.filename, registry)


def _new_node(
    driver_class: type[BlockDriver],
    path: str,
    options: dict[str, Any],
    *,
    read_only: bool,
    settings: _Settings,
    file: BlockNode | None = None,
    probed: bool = False,
) -> BlockNode:
    """Build a node and open its driver (which takes its locks if the node is active)."""
    perm, shared = permissions.for_open(read_only=read_only, force_share=settings.force_share)
    node = BlockNode(
        driver_class,
        path,
        read_only=read_only,
        active=settings.active,
        cache=settings.cache,
        discard=settings.discard,
        options=options,
        file=file,
        perm=perm,
        shared=shared,
        registry=settings.registry,
    )
    node.probed = probed
    node.for_repair = settings.for_repair
    _open_driver(node, options)
    return node


def _open_node(
    filename: str,
    fmt: str | None,
    *,
    read_only: bool,
    options: dict[str, Any] | None,
    follow_backing: bool,
    settings: _Settings,
    chain: list[tuple[int, int] | str],
) -> BlockNode:
    """Open ``filename`` as ``fmt`` (probed if None) over its protocol node, and its chain."""
    registry = settings.registry
    own_options, file_options, backing_options = _split_options(options)
    protocol_class, path = protocol_driver(filename, registry)
    format_class = registry.block_driver(fmt) if fmt is not None else None
    if format_class is not None and format_class.protocol:  # e.g. fmt="file": no format node
        return _new_node(format_class, path, own_options, read_only=read_only, settings=settings)
    file = _new_node(protocol_class, path, file_options, read_only=read_only, settings=settings)
    try:
        probed = format_class is None
        format_class = format_class or _probe(file, registry)
        node = _new_node(
            format_class,
            path,
            own_options,
            read_only=read_only,
            settings=settings,
            file=file,
            probed=probed,
        )
    except BaseException:
        file.close()
        raise
    if probed and format_class.name == "raw" and not read_only:  # as QEMU's raw_open
        user_warnings.warning(PROBED_RAW_WARNING, file.filename)
    try:
        if follow_backing and node.driver.backing_filename:
            node.backing = _open_backing(node, backing_options, settings, chain)
    except BaseException:
        node.close()
        raise
    return node


def backing_path(image_filename: str, backing_filename: str) -> str:
    """Where a backing file named in an image is: relative names are relative to the image."""
    if os.path.isabs(backing_filename) or ":" in backing_filename.split("/", 1)[0]:
        return backing_filename
    return os.path.join(os.path.dirname(image_filename), backing_filename)


def _identity(path: str) -> tuple[int, int] | str:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # missing, or a name with a NUL byte: open() will say
        return os.path.abspath(path)
    return (st.st_dev, st.st_ino)


def _open_backing(
    node: BlockNode,
    options: dict[str, Any],
    settings: _Settings,
    chain: list[tuple[int, int] | str],
) -> BlockNode:
    path = backing_path(node.filename, node.driver.backing_filename or "")
    if len(chain) >= MAX_CHAIN_LENGTH:
        raise ImageFormatError(
            f"Backing chain is longer than {MAX_CHAIN_LENGTH} images (at '{node.filename}')"
        )
    identity = _identity(path)
    if identity in chain:
        raise ImageFormatError(
            f"Backing file loop: '{path}' (backing file of '{node.filename}') "
            "is already in the chain"
        )
    try:
        return _open_node(
            path,
            node.driver.backing_format,
            read_only=True,
            options=options,
            follow_backing=True,
            settings=settings,
            chain=[*chain, identity],
        )
    except ImageFormatError:
        raise
    except ArcternError as exc:
        raise type(exc)(f"Could not open backing file of '{node.filename}': {exc}") from exc


def open_image(
    filename: str,
    *,
    fmt: str | None = None,
    read_only: bool = False,
    active: bool = True,
    cache: str = "writeback",
    force_share: bool = False,
    discard: str = "ignore",
    detect_zeroes: str = "off",
    options: dict[str, Any] | None = None,
    backing: bool = True,
    registry: Registry | None = None,
    for_repair: bool = False,
) -> BlockBackend:
    """Open an image and its backing chain; return the BlockBackend over its root node.

    ``fmt=None`` probes the format (raw, with a logged warning, if no format
    driver recognises the image). ``active=False`` opens it for an incoming
    migration: readable, but nothing is written and no lock is held until
    ``activate()``. ``options`` are driver open options; keys prefixed
    ``file.`` go to the protocol node, ``backing.`` to the backing image.
    ``for_repair=True`` (``qemu-img check -r``) lets a format open a damaged image
    read-write so that it can be repaired (QEMU's BDRV_O_CHECK).
    """
    settings = _Settings(
        registry=_registry(registry),
        active=active,
        cache=cache_mode(cache),
        discard=discard_mode(discard),
        force_share=force_share,
        for_repair=for_repair,
    )
    detect_zeroes = detect_zeroes_mode(detect_zeroes)
    if force_share and not read_only:
        raise UsageError("force-share=on can only be used with read-only images")
    if detect_zeroes == "unmap" and settings.discard != "unmap":
        raise UsageError(
            "setting detect-zeroes to unmap is not allowed without setting discard "
            "operation to unmap"
        )
    node = _open_node(
        filename,
        fmt,
        read_only=read_only,
        options=options,
        follow_backing=backing,
        settings=settings,
        chain=[_identity(protocol_driver(filename, settings.registry)[1])],
    )
    return BlockBackend(node, detect_zeroes=detect_zeroes)


def create_image(
    filename: str,
    fmt: str,
    size: int,
    options: dict[str, Any] | None = None,
    *,
    registry: Registry | None = None,
) -> None:
    """Create (or empty) ``filename`` and write a new ``fmt`` image of ``size`` bytes into it.

    ``options`` are the format's create options (``-o``), checked against
    ``create_options`` of its driver. The file is locked while it is written,
    so an image in use by another process (Arctern or QEMU) is refused.
    """
    registry = _registry(registry)
    format_class = registry.block_driver(fmt)
    options = dict(options or {})
    unknown = sorted(set(options) - set(format_class.create_options) - {"size"})
    if unknown:
        raise UsageError(
            f"Invalid parameter '{unknown[0]}' for format '{fmt}' "
            f"(supported: {', '.join(sorted(format_class.create_options)) or 'none'})"
        )
    if not isinstance(size, int) or size < 0:
        raise UsageError(f"Invalid image size {size!r} for '{filename}'")
    protocol_class, path = protocol_driver(filename, registry)
    file = BlockNode(
        protocol_class,
        path,
        read_only=False,
        active=True,
        perm=permissions.CONSISTENT_READ | permissions.WRITE | permissions.RESIZE,
        shared=permissions.ALL & ~(permissions.WRITE | permissions.RESIZE),
        registry=registry,
    )
    _open_driver(file, {"create": True}, action="create")
    try:
        file.truncate(0)
        if format_class.protocol:
            file.truncate(size, options.get("preallocation", "off"))
        else:
            format_class.create(file, size, options)
        file.flush()
    finally:
        file.close()
