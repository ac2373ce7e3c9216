"""Rotary position embeddings (RoFormer, Su et al., 2021) on projected heads.

The half-split convention of `keras_hub.layers.RotaryEmbedding` and Hugging
Face's `rotate_half`: feature `i` of the first half of a head and feature
`i + h/2` of the second half form one pair, rotated by the angle
`position * inverse_frequency[i]` (not the interleaved pairs `2i, 2i + 1` of
the original paper). Pair `i`'s inverse frequency is
`max_wavelength ** (-2i / h) / scaling_factor`: a scaling factor above 1
stretches positions (linear position interpolation).

Queries and keys are rotated by their own positions, so the logit between
them depends only on the distance between the positions. A key written to a
cache is rotated once, when it is written.

The angles are formed in float32 and their cosines and sines cast to the
heads' dtype, where the rotation is applied (what keras-hub does, so that
mixed-precision models agree with it).
"""

import numbers

import keras
import numpy as np
from keras import ops

from pygqa import validation

# The keys of `rope_frequency_adjustment` (Llama 3.1's long-context frequencies).
ADJUSTMENT_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_length")


def inverse_frequencies(head_dim, max_wavelength, scaling_factor=1.0, adjustment=None):
    """(head_dim // 2,) float32 inverse frequencies of the rotated pairs.

    `adjustment` (Llama 3.1): a dict with ADJUSTMENT_KEYS. Pairs whose
    wavelength exceeds `original_max_length / low_freq_factor` turn `factor`
    times slower, pairs shorter than `original_max_length / high_freq_factor`
    are kept, and the ones between blend the two linearly in
    `original_max_length / wavelength`.
    """
    exponents = ops.arange(0, head_dim, 2, dtype="float32") / float(head_dim)
    inverse = ops.power(ops.cast(max_wavelength, "float32"), -exponents)
    if adjustment is not None:
        factor, low, high, original = (float(adjustment[k]) for k in ADJUSTMENT_KEYS)
        wavelength = 2.0 * np.pi / inverse
        slowed = inverse / factor
        blend = (original / wavelength - low) / (high - low)  # 0 at the long end, 1 at the short
        blended = (1.0 - blend) * slowed + blend * inverse
        inverse = ops.where(wavelength > original / low, slowed,
                            ops.where(wavelength < original / high, inverse, blended))
    return inverse / ops.cast(scaling_factor, "float32")


def default_positions(length, start=None):
    """(1, length) int32 positions `start + arange(length)` (start 0 if None)."""
    positions = ops.arange(length, dtype="int32")
    if start is not None:
        positions = positions + ops.cast(start, "int32")
    return ops.expand_dims(positions, 0)


def rotate(x, positions, max_wavelength, scaling_factor=1.0, adjustment=None):
    """Rotates heads `x` (batch, T, heads, head_dim) by `positions` (batch or 1, T)."""
    x = ops.convert_to_tensor(x)
    head_dim = x.shape[-1]
    inverse = inverse_frequencies(head_dim, max_wavelength, scaling_factor, adjustment)
    # Letters: b batch, t position, f rotated pair.
    angles = ops.einsum("bt,f->btf", ops.cast(positions, "float32"), inverse)  # (b, t, h/2)
    angles = ops.concatenate([angles, angles], axis=-1)[:, :, None, :]  # (b, t, 1, h)
    cos = ops.cast(ops.cos(angles), x.dtype)
    sin = ops.cast(ops.sin(angles), x.dtype)
    first, second = ops.split(x, 2, axis=-1)  # (b, t, heads, h/2) each
    turned = ops.concatenate([-second, first], axis=-1)  # (b, t, heads, h)
    return x * cos + turned * sin


def check_adjustment(value):
    """None, or the `rope_frequency_adjustment` dict with positive numbers, checked."""
    if value is None:
        return None
    expected = ("None or a dict with the positive numbers " + ", ".join(ADJUSTMENT_KEYS)
                + " (low_freq_factor < high_freq_factor)")
    ok = isinstance(value, dict) and sorted(value) == sorted(ADJUSTMENT_KEYS)
    if ok:
        try:
            value = {k: validation.positive_number(k, value[k]) for k in ADJUSTMENT_KEYS}
        except (TypeError, ValueError):
            ok = False
    if not ok or value["low_freq_factor"] >= value["high_freq_factor"]:
        raise ValueError(
            f"Received an invalid value for `rope_frequency_adjustment`: expected {expected}. "
            f"Received: rope_frequency_adjustment={value!r}"
        )
    return value


def check_positions(positions, batch, length, rope_max_wavelength):
    """Checks the `positions` call argument; returns it as a (batch or 1, T) int tensor.

    Args:
        positions: None, or integers of shape (T,) or (batch, T): an array,
            a tensor, or a list (R's integer vectors arrive as lists).
        batch, length: the query's static batch size and length (or None).
        rope_max_wavelength: the layer's setting; positions need rotation.
    """
    if positions is None:
        return None
    if rope_max_wavelength is None:
        raise ValueError(
            "Received an invalid value for `positions`: expected None, since positions are "
            "used only by the rotary embedding and this layer has rope_max_wavelength=None. "
            f"Received: positions of shape {_shape_of(positions)}"
        )
    if isinstance(positions, (list, tuple)):
        positions = np.asarray(positions)
    if isinstance(positions, numbers.Number) or not hasattr(positions, "shape"):
        raise TypeError(
            "Received an invalid value for `positions`: expected integers of shape (T,) or "
            f"(batch, T). Received: positions={positions!r}"
        )
    dtype = keras.backend.standardize_dtype(positions.dtype)
    if "int" not in dtype:
        raise TypeError(
            "Received an invalid value for `positions`: expected an integer tensor or array "
            "(the position of each query row). Received: "
            f"positions.dtype={dtype}"
        )
    shape = validation.dims(positions.shape)
    expected = ((length,), (batch, length), (1, length))
    if not any(validation.shape_matches(shape, e) for e in expected):
        raise ValueError(
            "Received an invalid value for `positions`: expected shape (T,) or (batch, T) = "
            f"({length},) or ({batch}, {length}), one position per query row. "
            f"Received: positions.shape={shape}"
        )
    positions = ops.convert_to_tensor(positions)
    if len(shape) == 1:
        positions = ops.expand_dims(positions, 0)
    return ops.cast(positions, "int32")


def _shape_of(value):
    shape = getattr(value, "shape", None)
    return validation.dims(shape) if shape is not None else np.shape(value)
