"""Registers the qcow2 format driver with Arctern."""

from arctern.hookspecs import hookimpl
from arctern_block_qcow2.driver import Qcow2Driver


@hookimpl
def arctern_block_drivers():
    return [Qcow2Driver]
