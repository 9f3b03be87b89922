"""Hook implementations: tell Arctern which drivers this distribution provides."""

from arctern.hookspecs import hookimpl

from .driver import HdrDriver


@hookimpl
def arctern_block_drivers():
    return [HdrDriver]
