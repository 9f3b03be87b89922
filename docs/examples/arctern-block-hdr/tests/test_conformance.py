"""The hdr driver against Arctern's block-driver conformance kit.

This is all a third-party driver needs: subclass the kit's base class and
name the driver. pytest finds the kit through the ``pytest11`` entry point of
the ``arctern`` distribution.
"""

from arctern.testing.block import BlockDriverConformance


class TestHdrConformance(BlockDriverConformance):
    driver_name = "hdr"
