"""Attention kernels for the fused paths (no scores, no dropout), and the choice of path.

Each kernel takes query (b, t, u, h) and key/value (b, s, k, h) at key/value
head width, an optional boolean (b or 1, t, s) mask and a causal flag, and
returns (b, t, u, h) with attention.py's rule for rows that have no key.
`paths.choose_path` decides which one a call runs (README: "What runs where").
"""

from pygqa.kernels.paths import CPU, Device, Path, choose_path, current_device, kernel

__all__ = ["CPU", "Device", "Path", "choose_path", "current_device", "kernel"]
