"""The attention kernels, the choice between them, and the numerics they share.

Every module here imports only from this package (and keras and the
backends): the kernels stand below attention.py, the dispatcher that
`paths.choose_path` feeds, and numerics.py (softmax, the masked logit, masks)
stands below them all.

Each fused kernel takes query (b, t, u, h) and key/value (b, s, k, h) at key/value
head width, an optional boolean (b or 1, t, s) mask and a causal flag (band
kernels also a window), and returns (b, t, u, h) with numerics.py's rule for
rows that have no key; explicit.py is the path that forms the probabilities.
`paths.choose_path` decides which one a call runs (README: "What runs where").
"""

from pygqa.kernels.paths import CPU, Device, Path, choose_path, current_device, kernel

__all__ = ["CPU", "Device", "Path", "choose_path", "current_device", "kernel"]
