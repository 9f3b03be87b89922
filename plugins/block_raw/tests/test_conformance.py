"""The raw format (over the file protocol) against the conformance kit."""

from arctern.testing.block import BlockDriverConformance


class TestRawConformance(BlockDriverConformance):
    driver_name = "raw"


class TestRawConformanceDirect(BlockDriverConformance):
    """The same suite with O_DIRECT files: every request aligned by the layer."""

    driver_name = "raw"

    def open(self, path=None, **kwargs):
        kwargs.setdefault("cache", "none")
        return super().open(path, **kwargs)
