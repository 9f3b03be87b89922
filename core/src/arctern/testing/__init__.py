"""The Arctern conformance kit: test suites a plugin author runs against their own plugin.

* :mod:`arctern.testing.block`: :class:`~arctern.testing.block.BlockDriverConformance`,
  the block-driver suite;
* :mod:`arctern.testing.virtio`: a scripted guest-side virtio driver (split rings in
  guest RAM, virtio-mmio registers) for testing virtio devices without a guest CPU;
* :mod:`arctern.testing.machine`: ``BareBoard`` (a machine type with RAM only) and
  ``device_registry`` (a registry holding just the device classes a test gives);
* :mod:`arctern.testing.pytest_plugin`: the pytest plugin (loaded automatically
  through the ``pytest11`` entry point) with ``--arctern-block-driver NAME``.

See docs/plugin-authors/conformance.md.
"""
