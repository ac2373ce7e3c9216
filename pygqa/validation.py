"""Argument checks shared by the layer and the composition function.

Every message names the argument, says what was expected and shows what was
received, so that the same words reach Python and R users.
"""

import numbers
import os

import numpy as np
from keras.backend import standardize_dtype


def _invalid(name, expected, received):
    return (
        f"Received an invalid value for `{name}`: expected {expected}. "
        f"Received: {name}={received!r}"
    )


def positive_int(name, value):
    """Returns `value` as a Python int, or raises if it is not a positive integer.

    Integral floats (`4.0`, which is what an R double becomes) are accepted;
    booleans, strings, `4.5`, zero and negative numbers are not.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(_invalid(name, "a positive integer", value))
    if isinstance(value, numbers.Integral):
        as_int = int(value)
    elif float(value).is_integer():
        as_int = int(value)
    else:
        raise ValueError(_invalid(name, "a positive integer", value))
    if as_int <= 0:
        raise ValueError(_invalid(name, "a positive integer", value))
    return as_int


def optional_positive_int(name, value):
    """None, or `value` as a positive Python int (see `positive_int`)."""
    if value is None:
        return None
    try:
        return positive_int(name, value)
    except (TypeError, ValueError) as error:
        raise type(error)(_invalid(name, "None or a positive integer", value)) from None


def optional_non_negative_int(name, value, expected="None or a non-negative integer"):
    """Returns `value` as an int, or None; anything but None or a whole number >= 0 raises."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(_invalid(name, expected, value))
    if not float(value).is_integer() or value < 0:
        raise ValueError(_invalid(name, expected, value))
    return int(value)


def optional_seed(value):
    """Returns the seed as an int (or None); seeds must be non-negative integers."""
    return optional_non_negative_int("seed", value)


def head_counts(num_query_heads, num_key_value_heads):
    """Checks that key/value heads divide query heads evenly, returns both as ints."""
    num_query_heads = positive_int("num_query_heads", num_query_heads)
    num_key_value_heads = positive_int("num_key_value_heads", num_key_value_heads)
    if num_query_heads % num_key_value_heads:
        raise ValueError(
            "Received an invalid value for `num_key_value_heads`: expected a positive "
            "integer that divides `num_query_heads`. Received: "
            f"num_query_heads={num_query_heads}, num_key_value_heads={num_key_value_heads}"
        )
    return num_query_heads, num_key_value_heads


def dropout_rate(value):
    """Returns the dropout rate as a float in [0, 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(_invalid("dropout", "a number in [0, 1)", value))
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(_invalid("dropout", "a number in [0, 1)", value))
    return float(value)


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(_invalid(name, "True or False", value))
    return bool(value)


def optional_boolean(name, value):
    """None, or a bool (numpy's included)."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(_invalid(name, "None, True or False", value))
    return bool(value)


def dims(shape):
    """A static shape as a tuple of ints and None, for messages and comparisons."""
    return tuple(None if d is None else int(d) for d in shape)


def _same(a, b):
    """Two static dims are consistent unless both are known and differ."""
    return a is None or b is None or a == b


def input_shapes(query_shape, value_shape, key_shape, built_dims=None):
    """Checks the shapes of query, value and key before anything is computed.

    `built_dims` holds the feature dims the weights were built for, as a dict
    with keys "query", "value" and "key" (None before the layer is built).
    """
    shapes = {"query": query_shape, "value": value_shape, "key": key_shape}
    for name, shape in shapes.items():
        if len(shape) != 3:
            raise ValueError(
                f"Received an invalid value for `{name}`: expected a tensor of rank 3 "
                f"(batch, sequence_length, features). Received: {name}.shape={dims(shape)}"
            )
        # An empty batch is refused too: some backends cannot reshape 0 elements.
        if 0 in tuple(shape):
            raise ValueError(
                f"Received an invalid value for `{name}`: expected a non-empty batch, sequence "
                f"and feature axis. Received: {name}.shape={dims(shape)}"
            )
    if not (_same(value_shape[0], key_shape[0]) and _same(value_shape[1], key_shape[1])):
        raise ValueError(
            "Received incompatible `key` and `value`: expected the same batch size and "
            f"sequence length. Received: key.shape={dims(key_shape)}, "
            f"value.shape={dims(value_shape)}"
        )
    if not _same(query_shape[0], value_shape[0]):
        raise ValueError(
            "Received incompatible `query` and `value`: expected the same batch size. "
            f"Received: query.shape={dims(query_shape)}, value.shape={dims(value_shape)}"
        )
    for name, dim in (built_dims or {}).items():
        if not _same(shapes[name][-1], dim):
            raise ValueError(
                f"Received an invalid value for `{name}`: the layer was built for {dim} "
                f"features in `{name}`. Received: {name}.shape={dims(shapes[name])}"
            )


def shape_matches(shape, expected):
    """Same rank, and every dimension equal where both are known."""
    return len(shape) == len(expected) and all(_same(a, b) for a, b in zip(shape, expected))


def mask_shape(name, shape, expected):
    """Checks a mask's shape against `expected` (a tuple that may hold None)."""
    if not shape_matches(shape, expected):
        raise ValueError(
            f"Received an invalid value for `{name}`: expected a boolean mask of shape "
            f"{dims(expected)}. Received: {name}.shape={dims(shape)}"
        )


def _dtype_name(x):
    """The Keras name of `x`'s dtype, or numpy's spelling where Keras has none (strings)."""
    try:
        return standardize_dtype(x.dtype)
    except ValueError:
        return str(x.dtype)


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def array_like(name, x, expected):
    """Raises a TypeError unless `x` is a tensor or array (something with shape and dtype)."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(
            f"Received an invalid value for `{name}`: expected {expected}. "
            f"Received: {name}={_short(x)} of type {type(x).__name__}"
        )


def tensor_shapes(query, value, key):
    """Checks that query, value and key are floating-point tensors; returns their shapes.

    Integer, boolean, complex and string inputs would otherwise fail deep in a
    backend (torch refuses int64 in matmuls, TensorFlow complex in softmax).
    """
    for name, x in (("query", query), ("value", value), ("key", key)):
        array_like(name, x, "a floating-point tensor or array of rank 3")
        dtype = _dtype_name(x)
        if not (dtype.startswith("float") or dtype == "bfloat16"):
            raise TypeError(
                f"Received an invalid value for `{name}`: expected a floating-point tensor "
                f"(cast it with e.g. `{name}.astype('float32')`). Received: {name}.dtype={dtype}"
            )
    return query.shape, value.shape, key.shape


def mask(name, value, expected):
    """Checks a mask's type, dtype and shape against `expected` (a tuple that may hold None).

    Boolean masks, and integer masks read as nonzero = attend (what Keras does),
    are accepted. Float masks are refused: many libraries use additive float
    masks (0 to keep, -inf or -1e9 to drop), which a cast to bool would invert.
    """
    array_like(name, value, "a boolean tensor or array")
    dtype = _dtype_name(value)
    if dtype != "bool" and not dtype.startswith(("int", "uint")):
        raise TypeError(
            f"Received an invalid value for `{name}`: expected a boolean mask (True = attend) or "
            f"integers (nonzero = attend); a float mask may be additive, so convert it "
            f"explicitly, e.g. `{name} != 0`. Received: {name}.dtype={dtype}"
        )
    mask_shape(name, tuple(value.shape), expected)


def _memory_bytes():
    """This machine's physical memory in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes(n):
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} bytes"


def weights_fit_in_memory(sizes, feature_dims, use_bias, dtype, memory_bytes=None):
    """Refuses head sizes whose weights could not be allocated on this machine.

    `sizes` maps head_dim, num_query_heads, num_key_value_heads to their values,
    `feature_dims` the query, value and key feature sizes. Without this check an
    absurd size (`head_dim=1e9`) ends in a backend allocator error that names
    no argument.
    """
    h, u, k = sizes["head_dim"], sizes["num_query_heads"], sizes["num_key_value_heads"]
    m, m_v, m_k = feature_dims["query"], feature_dims["value"], feature_dims["key"]
    elements = m * u * h + m_k * k * h + m_v * k * h + u * h * m  # the four kernels
    if use_bias:
        elements += u * h + 2 * k * h + m
    needed = elements * np.dtype(standardize_dtype(dtype).replace("bfloat16", "float16")).itemsize
    memory = _memory_bytes() if memory_bytes is None else memory_bytes
    if memory is None or needed <= memory:
        return
    name = max(sizes, key=sizes.get)  # the size that makes the weights this large
    raise ValueError(
        f"Received an invalid value for `{name}`: the layer's weights would need "
        f"{_bytes(needed)} ({dtype}; head_dim={h}, num_query_heads={u}, "
        f"num_key_value_heads={k}, inputs with {m}/{m_v}/{m_k} query/value/key features), "
        f"more than this machine's {_bytes(memory)} of memory. Received: {name}={sizes[name]}"
    )


def positive_number(name, value):
    """Returns `value` as a finite float > 0, or raises (booleans and strings are refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(_invalid(name, "a positive number", value))
    if not (np.isfinite(float(value)) and float(value) > 0.0):
        raise ValueError(_invalid(name, "a positive number", value))
    return float(value)


def optional_positive_number(name, value):
    """None, or `value` as a finite float > 0 (see `positive_number`)."""
    if value is None:
        return None
    try:
        return positive_number(name, value)
    except (TypeError, ValueError) as error:
        raise type(error)(_invalid(name, "None or a positive number", value)) from None
