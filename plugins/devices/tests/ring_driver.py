"""The scripted guest driver of the devices tests: the one of Arctern's testing kit
(:mod:`arctern.testing.virtio`, which third-party device authors use too), under the
names these tests import."""

from arctern.testing.virtio import DESC, F_INDIRECT, F_NEXT, F_WRITE, MMIODriver, Ring
from arctern.virtio.spec import STATUS_DRIVER_OK as DRIVER_OK
from arctern.virtio.spec import STATUS_NEEDS_RESET as NEEDS_RESET

__all__ = [
    "DESC",
    "DRIVER_OK",
    "F_INDIRECT",
    "F_NEXT",
    "F_WRITE",
    "NEEDS_RESET",
    "MMIODriver",
    "Ring",
]
