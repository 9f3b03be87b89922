"""The live-migration demo (``arctern-demo``, the README's main command) and its guest.

``disk_writer.elf`` is built from ``disk_writer.c`` with the runtime in the
repository's ``tests/guests`` (``i686-linux-gnu-gcc``, ``-DROUNDS=600``) and
shipped inside the package, so running the demo needs no cross compiler;
``core/tests/migration/test_demo.py`` checks that the shipped binary matches
its source.
"""
