"""The raw format (over the file protocol) against the conformance kit."""

from arctern.testing.block import BlockDriverConformance, MiB


class TestRawConformance(BlockDriverConformance):
    driver_name = "raw"
    #: raw images may end anywhere, not only on a sector boundary.
    image_size = 3 * MiB + 5 * 512 + 77


class TestRawConformanceDirect(TestRawConformance):
    """The same suite with O_DIRECT files: the layer aligns every request."""

    def open(self, path=None, **kwargs):
        kwargs.setdefault("cache", "none")
        return super().open(path, **kwargs)
