"""The one exception hierarchy of Arctern.

Every error a user can cause (bad option, bad image, bad stream, bad plugin)
is an ArcternError whose message is one line saying what failed, on which
file or URI, and what to do. The CLIs print that line and exit non-zero;
they never show a traceback for an ArcternError.
"""

#: The logger for what a user should see that is no error (a probed raw image opened for
#: writing); the command-line tools print its records as QEMU's ``WARNING: ...`` lines.
USER_WARNINGS_LOGGER = "arctern.user_warnings"


class ArcternError(Exception):
    """Base of every error Arctern reports to a user."""


class UsageError(ArcternError):
    """A bad command-line option or argument."""


class ConfigError(ArcternError):
    """A bad build configuration (arctern.toml, ARCTERN_* variables)."""


class PluginError(ArcternError):
    """A plugin failed to import, to register, or broke its contract."""


class PluginRefused(PluginError):
    """A plugin's class lacks a required hook of its contract."""


class NotFoundError(ArcternError):
    """A named driver, machine, device or transport is not available."""


class BlockError(ArcternError):
    """An error of the block layer (opening, reading or writing an image)."""


class ImageFormatError(BlockError):
    """The image is corrupt, hostile or uses a feature we do not support."""


class ImageLockError(BlockError):
    """Another process holds a conflicting lock on the image file."""


class ReadOnlyError(BlockError):
    """A write was attempted on a node opened read-only."""


class InactiveError(BlockError):
    """A write was attempted on an inactive node (migration hand-over)."""


class OutOfRangeError(BlockError):
    """An access past the end of the device."""


class MachineError(ArcternError):
    """An error building or running a machine (bad kernel, bad device option)."""


class MigrationError(ArcternError):
    """A migration failed: bad stream, bad URI, dead peer, verification mismatch."""


class StreamError(MigrationError):
    """The migration stream is truncated, corrupt or of an unknown version."""


class TransportError(MigrationError):
    """A migration transport could not connect, listen or run its command."""
