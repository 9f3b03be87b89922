"""Virtio in the core: what a virtio device and a virtio transport share.

A plugin writes a virtio device by subclassing :class:`VirtioDevice` and
returning the class from its ``arctern_devices`` hook; any transport (the
virtio-mmio of arctern-devices, or a third party's) drives it. The pieces:

* :mod:`arctern.virtio.device`: :class:`VirtioDevice`, the device contract
  (feature negotiation, status, config space, ISR, migration of all of it);
* :mod:`arctern.virtio.virtqueue`: :class:`SplitVirtqueue`, descriptor-chain
  walking with every guest-written value checked (:class:`RingError`);
* :mod:`arctern.virtio.scatter`: gather/scatter helpers over an element's buffers;
* :mod:`arctern.virtio.transport`: :class:`VirtioBus` and the
  :class:`VirtioTransport` protocol a transport implements;
* :mod:`arctern.virtio.spec`: status, ISR and feature bits, device IDs.

See docs/plugin-authors/virtio-devices.md.
"""

from arctern.virtio.device import FEATURE_PROPERTIES, QUEUE_VMSTATE, VIRTIO_FIELDS, VirtioDevice
from arctern.virtio.scatter import GuestMemory, Segment, ram_runs, sg_read, sg_slice, sg_write
from arctern.virtio.spec import bit
from arctern.virtio.transport import VirtioBus, VirtioTransport
from arctern.virtio.virtqueue import VIRTQUEUE_MAX_SIZE, RingError, SplitVirtqueue, VirtqElement

__all__ = [
    "FEATURE_PROPERTIES",
    "QUEUE_VMSTATE",
    "VIRTIO_FIELDS",
    "VIRTQUEUE_MAX_SIZE",
    "GuestMemory",
    "RingError",
    "Segment",
    "SplitVirtqueue",
    "VirtioBus",
    "VirtioDevice",
    "VirtioTransport",
    "VirtqElement",
    "bit",
    "ram_runs",
    "sg_read",
    "sg_slice",
    "sg_write",
]
