"""Registration of the block_raw plugin: the file protocol and the raw format."""

from arctern.hookspecs import hookimpl
from arctern_block_raw.file import FileDriver
from arctern_block_raw.raw import RawDriver


@hookimpl
def arctern_block_drivers():
    return [FileDriver, RawDriver]
