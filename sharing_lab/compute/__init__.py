"""Where and how tensors are computed: the device, precision and memory format of a run
(:mod:`~sharing_lab.compute.runtime`), process groups for several GPUs (:mod:`~sharing_lab.compute.distributed`),
one training step, and 1×1 convolutions as a matrix product."""
