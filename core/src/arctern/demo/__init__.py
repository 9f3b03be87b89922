"""The live-migration demo (``arctern-demo``, the README's main command) and its guest.

``disk_writer.elf`` is built from ``disk_writer.c`` with the runtime in the
repository's ``tests/guests`` and shipped inside the package, so running the
demo needs no cross compiler. Rebuild it after changing the source::

    .venv/bin/python -c "import sys, shutil; sys.path.insert(0, 'tests');
    from guests.build import build_guest; shutil.copy(build_guest(
    'core/src/arctern/demo/disk_writer.c', cflags=['-DROUNDS=600']),
    'core/src/arctern/demo/disk_writer.elf')"

The end-to-end migration tests build the same source themselves.
"""
