"""qcow2 against the block-driver conformance kit."""

from arctern.testing.block import BlockDriverConformance, MiB


class TestQcow2Conformance(BlockDriverConformance):
    driver_name = "qcow2"
    #: qcow2 sizes are whole 512-byte sectors (qemu-img rounds up); still no cluster multiple.
    image_size = 3 * MiB + 3 * 512


class TestQcow2SmallClustersTinyCache(TestQcow2Conformance):
    """512-byte clusters, 1-bit refcounts and two-table caches: eviction on every request."""

    create_options = {"cluster_size": 512, "refcount_bits": 1}
    open_options = {"l2-cache-size": 1024, "refcount-cache-size": 1024}


class TestQcow2Version2(TestQcow2Conformance):
    create_options = {"compat": "0.10", "cluster_size": 4096}
