"""qcow2 against the block-driver conformance kit, over the shapes of image that matter."""

from arctern.testing.block import BlockDriverConformance


class TestQcow2Conformance(BlockDriverConformance):
    driver_name = "qcow2"


class TestQcow2SmallClustersTinyCache(BlockDriverConformance):
    """512-byte clusters, 1-bit refcounts and two-table caches: eviction on every request."""

    driver_name = "qcow2"
    create_options = {"cluster_size": 512, "refcount_bits": 1}
    open_options = {"l2-cache-size": 1024, "refcount-cache-size": 1024}


class TestQcow2Version2(BlockDriverConformance):
    driver_name = "qcow2"
    create_options = {"compat": "0.10", "cluster_size": 4096}


class TestQcow2LazyRefcounts(BlockDriverConformance):
    """The dirty bit comes and goes: still nothing written while inactive."""

    driver_name = "qcow2"
    create_options = {"lazy_refcounts": "on", "cluster_size": 2 << 20}


class TestQcow2Direct(BlockDriverConformance):
    """O_DIRECT (cache=none): the layer aligns the driver's small metadata writes."""

    driver_name = "qcow2"
    create_options = {"cluster_size": 4096}

    def open(self, path=None, **kwargs):
        kwargs.setdefault("cache", "none")
        return super().open(path, **kwargs)
