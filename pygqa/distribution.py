"""`layout_map`: how to shard a GroupQueryAttention over devices with `keras.distribution`.

The layer needs no change to run distributed: `keras.distribution` (the JAX
backend) places each variable by the `LayoutMap` of a `ModelParallel`
distribution, and XLA partitions the computation to match. This module
writes that layout for pygqa's variables: the head axes of the projection
kernels are split over the mesh's model axis, the layout Megatron-LM uses for
attention (each device computes whole heads; one reduction after the output
projection).
"""

import re

import keras

from pygqa import validation

# Projection variables and the axis of each that holds the heads:
# query/kernel (m, u, h), query/bias (u, h), key|value/kernel (m_k, k, h),
# key|value/bias (k, h), attention_output/kernel (u, h, m). The output bias
# (m,) has no head axis and stays whole on every device.
_HEAD_AXES = {
    "query/kernel": (3, 1),
    "query/bias": (2, 0),
    "key/kernel": (3, 1),
    "key/bias": (2, 0),
    "value/kernel": (3, 1),
    "value/bias": (2, 0),
    "attention_output/kernel": (3, 0),
    "attention_output/bias": (1, None),
}


def layout_map(
    device_mesh,
    model_axis="model",
    *,
    num_query_heads=None,
    num_key_value_heads=None,
    layer_name=None,
):
    """Returns a `keras.distribution.LayoutMap` that shards attention heads over devices.

    Query, key and value kernels and biases are split along their head axis,
    and the output kernel along its query-head axis, over the mesh axis
    `model_axis`; every device then holds and computes whole heads. With a
    `(2, 2)` mesh of axes `("batch", "model")` and 8 query / 2 key/value
    heads, each device holds 4 query heads and 1 key/value head, and the
    batch is split over the `"batch"` axis by `ModelParallel`. Weights are the
    same numbers as on one device: outputs and gradients match the
    single-device layer up to float rounding.

    The keys are regular expressions over variable paths (`LayoutMap`
    matches them in full), so they apply to every layer with `query`, `key`,
    `value` and `attention_output` projections, `keras.layers.MultiHeadAttention`
    and `keras.layers.GroupQueryAttention` included; `layer_name` restricts
    them to one layer. Combine with the layouts of other layers with
    `LayoutMap.update()`; a path matched by two keys is an error in Keras.

    A head axis can only be split evenly. If `num_query_heads` is given and
    not divisible by the model axis's size, this function raises. If
    `num_key_value_heads` is given and not divisible (2 key/value heads on 4
    devices, say), key and value projections are replicated on every device
    instead, as Megatron-LM does: they are `num_query_heads /
    num_key_value_heads` times smaller than the query projection, so this
    costs little memory. Without head counts every head axis is split, and a
    count that does not divide makes JAX raise when the layer is built.

    Must be used before the layer is built: variables are placed when they
    are created, under `keras.distribution.set_distribution(...)` or
    `with distribution.scope():`.

    Args:
        device_mesh: A `keras.distribution.DeviceMesh`, for example
            `DeviceMesh((2, 2), ["batch", "model"])`.
        model_axis: Name of the mesh axis that splits the heads.
        num_query_heads: Optional number of query heads, checked against the
            model axis's size.
        num_key_value_heads: Optional number of key/value heads; when the
            model axis's size does not divide it, key and value projections
            are replicated (see above).
        layer_name: Optional name of the one layer to shard; by default
            every attention layer whose projections are named like pygqa's.

    Returns:
        A `keras.distribution.LayoutMap` on `device_mesh`, for
        `keras.distribution.ModelParallel(layout_map=..., batch_dim_name=...)`.

    Raises:
        TypeError: `device_mesh` is not a `DeviceMesh`, or a head count or
            name has the wrong type.
        ValueError: `model_axis` is not an axis of `device_mesh`, or
            `num_query_heads` is not divisible by its size.

    Example:

    >>> import keras
    >>> mesh = keras.distribution.DeviceMesh((1, 4), ["batch", "model"],
    ...                                      [f"cpu:{i}" for i in range(4)])
    >>> layouts = layout_map(mesh, num_query_heads=8, num_key_value_heads=2)
    >>> layouts["gqa/query/kernel"].axes
    (None, 'model', None)
    >>> layouts["gqa/key/kernel"].axes  # 2 key/value heads on 4 devices: replicated
    (None, None, None)
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise TypeError(
            "Received an invalid value for `device_mesh`: expected a "
            f"keras.distribution.DeviceMesh. Received: device_mesh={device_mesh!r}"
        )
    axis_names = tuple(device_mesh.axis_names)
    if not isinstance(model_axis, str) or model_axis not in axis_names:
        raise ValueError(
            "Received an invalid value for `model_axis`: expected one of the mesh's axis "
            f"names {axis_names}. Received: model_axis={model_axis!r}"
        )
    if layer_name is not None and not isinstance(layer_name, str):
        raise TypeError(
            "Received an invalid value for `layer_name`: expected None or a layer name. "
            f"Received: layer_name={layer_name!r}"
        )
    size = int(device_mesh.shape[axis_names.index(model_axis)])
    if num_query_heads is not None:
        num_query_heads = validation.positive_int("num_query_heads", num_query_heads)
        if num_query_heads % size:
            raise ValueError(
                "Received an invalid value for `num_query_heads`: expected a number of "
                f"query heads divisible by the size of mesh axis '{model_axis}' ({size}), "
                f"so that every device holds whole heads. Received: "
                f"num_query_heads={num_query_heads}"
            )
    replicate_key_value = False
    if num_key_value_heads is not None:
        num_key_value_heads = validation.positive_int("num_key_value_heads", num_key_value_heads)
        replicate_key_value = num_key_value_heads % size != 0

    # "anything/" then the layer's own name (any name by default), then the
    # projection: `.*/query/kernel` alone would also match `my_query/kernel`.
    owner = r"[^/]+" if layer_name is None else re.escape(layer_name)
    layouts = keras.distribution.LayoutMap(device_mesh)
    for variable, (rank, head_axis) in _HEAD_AXES.items():
        axes = [None] * rank
        projection = variable.split("/")[0]
        if head_axis is not None and not (
            replicate_key_value and projection in ("key", "value")
        ):
            axes[head_axis] = model_axis
        layouts[rf"(?:.*/)?{owner}/{re.escape(variable)}"] = tuple(axes)
    return layouts
