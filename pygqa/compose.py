"""`layer_group_query_attention()`: the reference page's function, in Python.

It follows keras3's composition rule: the first argument decides what comes
back (the layer itself, a model with the layer added, or the layer's output).
"""

import keras

from pygqa.layer import GroupQueryAttention

# Stands in for "no default" on head_dim and the head counts: Python does not
# allow required parameters after `object=None`, the reference page's order.
_REQUIRED = object()
_REQUIRED_NAMES = ("head_dim", "num_query_heads", "num_key_value_heads")


def layer_group_query_attention(
    object=None,  # noqa: A002 - the reference page's name for the first argument
    head_dim=_REQUIRED,
    num_query_heads=_REQUIRED,
    num_key_value_heads=_REQUIRED,
    dropout=0.0,
    use_bias=True,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
    activity_regularizer=None,
    kernel_constraint=None,
    bias_constraint=None,
    **kwargs,
):
    """Creates a `GroupQueryAttention` layer and composes it with `object`.

    Args:
        object: What to compose the layer with:
            - None: the configured layer is returned;
            - a `keras.Sequential` model: the layer is added, the model returned;
            - a tensor (symbolic or eager) or numpy array: the layer's output
              for self-attention, `layer(object)`;
            - a list or tuple: `layer(*object)`, i.e. (query, value[, key]);
            - a dict: `layer(**object)`, any call argument by name.
        head_dim, num_query_heads, num_key_value_heads, dropout, use_bias,
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint, **kwargs: as for `GroupQueryAttention`.

    Returns:
        The layer, the model, or the layer's output (see `object`).

    Raises:
        TypeError: a required argument is missing, or `object` is of a type
            the layer cannot be composed with.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((2, 7, 32), dtype="float32")
    >>> layer_group_query_attention(x, 16, 8, 2).shape
    (2, 7, 32)
    """
    required = dict(zip(_REQUIRED_NAMES, (head_dim, num_query_heads, num_key_value_heads)))
    missing = [name for name, value in required.items() if value is _REQUIRED]
    if missing:
        raise TypeError(
            "layer_group_query_attention() is missing required argument(s): "
            + ", ".join(f"`{name}`" for name in missing)
        )
    layer = GroupQueryAttention(
        **required,
        dropout=dropout,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        bias_initializer=bias_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer,
        activity_regularizer=activity_regularizer,
        kernel_constraint=kernel_constraint,
        bias_constraint=bias_constraint,
        **kwargs,
    )
    return compose(layer, object)


def compose(layer, object):  # noqa: A002
    """Applies keras3's composition rule to an existing layer."""
    if object is None:
        return layer
    if isinstance(object, keras.Sequential):
        object.add(layer)
        return object
    if isinstance(object, keras.Model):
        raise TypeError(
            "Received an invalid value for `object`: expected None, a Sequential model, "
            "a tensor, or a list/dict of call arguments; a functional or subclassed model "
            "cannot have a layer added. Received: "
            f"object={type(object).__name__} model {object.name!r}"
        )
    if isinstance(object, dict):
        return layer(**object)
    if isinstance(object, (list, tuple)):
        if not 1 <= len(object) <= 3:
            raise TypeError(
                "Received an invalid value for `object`: expected a list of 1 to 3 "
                f"tensors (query, value, key). Received: a list of length {len(object)}"
            )
        return layer(*object)
    if _is_tensor_like(object):
        return layer(object)
    raise TypeError(
        "Received an invalid value for `object`: expected None, a Sequential model, a "
        "tensor or array, a list (query, value[, key]) or a dict of call arguments. "
        f"Received: object of type {type(object).__name__}"
    )


def _is_tensor_like(value):
    return (
        isinstance(value, keras.KerasTensor)
        or keras.ops.is_tensor(value)
        or hasattr(value, "__array__")
    )
