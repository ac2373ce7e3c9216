"""Conversions into and out of `GroupQueryAttention`.

- `from_multi_head_attention`: the paper's recipe (Ainslie et al., 2023,
  section 2.1) for turning a multi-head checkpoint into grouped query
  attention: the key and value projection heads of each group are
  mean-pooled into one head; query and output projections are copied.
- `from_keras` / `to_keras`: exact conversions between pygqa's layer and
  `keras.layers.GroupQueryAttention`, whose weights have the same layout.

Every function takes a built layer and returns a new, built layer that owns
copies of the weights (the source layer is never modified).
"""

import keras
import numpy as np

from pygqa import validation
from pygqa.layer import DECODER_DEFAULTS, GroupQueryAttention

# Constructor arguments that both GroupQueryAttention classes (and, for
# everything but the head counts, MultiHeadAttention) understand the same way.
_SHARED_CONFIG = (
    "dropout",
    "use_bias",
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "seed",
)

# Fixed by the source layer's weights, so they cannot be overridden.
_FIXED_BY_WEIGHTS = ("head_dim", "num_query_heads", "num_key_value_heads", "use_bias")

# Options of the grouped layers that MultiHeadAttention does not have.
_GROUPED_OPTIONS = ("sliding_window", "use_gate")


def from_multi_head_attention(layer, num_key_value_heads, **kwargs):
    """Builds a `GroupQueryAttention` from a multi-head checkpoint by mean-pooling.

    The recipe of Ainslie et al. (2023): query heads are split into
    `num_key_value_heads` contiguous groups (query head `i` joins group
    `i // (num_heads // num_key_value_heads)`, the convention of
    `GroupQueryAttention`), and the key head of a group is the mean of the
    key heads its query heads used in `layer`; the same for values. Kernels
    and biases are pooled alike, so each pooled head is exactly the mean of
    the original heads' projections. Query and output projections are copied
    unchanged. The paper then fine-tunes ("uptrains") the converted model for
    a few percent of the original training steps.

    `layer` may be a `keras.layers.MultiHeadAttention` or a grouped layer
    (`GroupQueryAttention` from pygqa or Keras) with other key/value heads:
    then each query head's key/value head is what gets averaged, so reducing
    8 key/value heads to 2 averages 4 heads per group, and going from 2 to 4
    repeats each head twice (an exact conversion). The means are taken in
    float64 and rounded once to the variables' dtype, so heads that are
    already equal within a group come out unchanged, bit for bit.

    With `num_key_value_heads` equal to the number of heads, the new layer
    computes what `layer` computes (multi-head attention is the special case
    of one query head per group). One difference remains in every case: a
    query position whose keys are all masked gets zero attention in pygqa,
    while Keras's layers attend uniformly to all keys there.

    Configuration carried over: `dropout`, `use_bias`, the initializers,
    regularizers and constraints, `seed`, the dtype policy and `trainable`.
    The name is not carried over (the new layer is a different kind of
    layer); pass `name=` to choose one.

    Args:
        layer: A built `keras.layers.MultiHeadAttention` with
            `key_dim == value_dim` (gated or not), rank-3 inputs
            attending over axis 1 and an output projected back to the query's
            feature size; or a built `GroupQueryAttention` (pygqa's or
            Keras's).
        num_key_value_heads: Number of key/value heads of the new layer; a
            positive integer that divides the number of query heads.
        **kwargs: Constructor arguments of `GroupQueryAttention` that replace
            the carried-over ones, e.g. `name="gqa"` or `dropout=0.0`.
            `head_dim`, `num_query_heads` and `use_bias` are set by the
            weights and cannot be given.

    Returns:
        A built `GroupQueryAttention` holding the converted weights.

    Raises:
        TypeError: `layer` is not one of the accepted layers, or `kwargs`
            names an argument fixed by the weights.
        ValueError: `layer` is not built or uses an option that grouped query
            attention cannot express, or `num_key_value_heads` does not
            divide the number of query heads.

    Example:

    >>> import keras, numpy as np
    >>> mha = keras.layers.MultiHeadAttention(num_heads=8, key_dim=16)
    >>> x = np.random.normal(size=(2, 10, 32)).astype("float32")
    >>> _ = mha(x, x)
    >>> gqa = from_multi_head_attention(mha, num_key_value_heads=2)
    >>> gqa.num_key_value_heads, tuple(gqa(x).shape)
    (2, (2, 10, 32))
    """
    if isinstance(layer, keras.layers.MultiHeadAttention):
        source = _describe_multi_head(layer)
    elif isinstance(layer, (GroupQueryAttention, keras.layers.GroupQueryAttention)):
        source = _describe_grouped(layer)
    else:
        raise TypeError(
            "Received an invalid value for `layer`: expected a built "
            "keras.layers.MultiHeadAttention or GroupQueryAttention layer. "
            f"Received: layer={_name_of(layer)}"
        )
    num_query_heads = source["num_query_heads"]
    num_key_value_heads = validation.positive_int("num_key_value_heads", num_key_value_heads)
    if num_query_heads % num_key_value_heads:
        raise ValueError(
            "Received an invalid value for `num_key_value_heads`: expected a positive "
            f"integer that divides the {num_query_heads} query heads of `layer`. "
            f"Received: num_key_value_heads={num_key_value_heads}"
        )
    weights = source["weights"]
    for name in ("key", "value"):
        kernel, bias = weights[name]
        # Kernels (m, k, h) pool over axis 1, biases (k, h) over axis 0.
        weights[name] = (
            pool_heads(kernel, num_query_heads, num_key_value_heads, axis=1),
            None if bias is None else pool_heads(bias, num_query_heads, num_key_value_heads,
                                                 axis=0),
        )
    config = dict(source["config"], num_key_value_heads=num_key_value_heads)
    return _new_layer(GroupQueryAttention, config, source["dims"], weights, kwargs, layer)


def from_keras(layer, **kwargs):
    """Converts a `keras.layers.GroupQueryAttention` into pygqa's layer, exactly.

    The two layers have the same weights (names, shapes, order), so the
    converted layer gives the same outputs as `layer`, except on query
    positions whose keys are all masked (pygqa gives them zero attention;
    Keras's layer gives them uniform or zero attention depending on its code
    path).

    Configuration carried over: the head sizes, `dropout`, `use_bias`, the
    initializers, regularizers and constraints, `seed`, the dtype policy,
    `trainable` and the name.

    Args:
        layer: A built `keras.layers.GroupQueryAttention` (gated and
            windowed layers included).
        **kwargs: Constructor arguments of pygqa's `GroupQueryAttention` that
            replace the carried-over ones, such as `name`; the head sizes and
            `use_bias` are set by the weights.

    Returns:
        A built `pygqa.GroupQueryAttention` holding a copy of the weights.

    Raises:
        TypeError: `layer` is not a `keras.layers.GroupQueryAttention`.
        ValueError: `layer` is not built.

    Example:

    >>> import keras, numpy as np
    >>> theirs = keras.layers.GroupQueryAttention(16, 8, 2)
    >>> x = np.random.normal(size=(2, 10, 32)).astype("float32")
    >>> _ = theirs(x, x)
    >>> ours = from_keras(theirs)
    >>> tuple(ours(x).shape)
    (2, 10, 32)
    """
    if not isinstance(layer, keras.layers.GroupQueryAttention):
        raise TypeError(
            "Received an invalid value for `layer`: expected a built "
            f"keras.layers.GroupQueryAttention. Received: layer={_name_of(layer)}"
        )
    source = _describe_grouped(layer)
    config = dict(source["config"], name=layer.name)
    return _new_layer(GroupQueryAttention, config, source["dims"], source["weights"], kwargs,
                      layer)


def to_keras(layer, **kwargs):
    """Converts pygqa's `GroupQueryAttention` into `keras.layers.GroupQueryAttention`.

    The exact inverse of `from_keras`: same weights, same outputs (except on
    query positions whose keys are all masked, see `from_keras`). Useful to
    hand a model to code that expects Keras's own layer.

    Args:
        layer: A built `pygqa.GroupQueryAttention`.
        **kwargs: Constructor arguments of `keras.layers.GroupQueryAttention`
            that replace the carried-over ones, such as `name` or
            `flash_attention`; the head sizes and `use_bias` are set by the
            weights.

    Returns:
        A built `keras.layers.GroupQueryAttention` holding a copy of the
        weights.

    Raises:
        TypeError: `layer` is not a `pygqa.GroupQueryAttention`.
        ValueError: `layer` is not built.

    Example:

    >>> import numpy as np
    >>> ours = GroupQueryAttention(16, 8, 2)
    >>> x = np.random.normal(size=(2, 10, 32)).astype("float32")
    >>> _ = ours(x)
    >>> theirs = to_keras(ours)
    >>> tuple(theirs(x, x).shape)
    (2, 10, 32)
    """
    if not isinstance(layer, GroupQueryAttention):
        raise TypeError(
            "Received an invalid value for `layer`: expected a built "
            f"pygqa.GroupQueryAttention. Received: layer={_name_of(layer)}"
        )
    source = _describe_grouped(layer)
    config = dict(source["config"], name=layer.name)
    return _new_layer(keras.layers.GroupQueryAttention, config, source["dims"],
                      source["weights"], kwargs, layer)


def pool_heads(array, num_query_heads, num_key_value_heads, axis):
    """Mean-pools key/value heads of `array` along `axis` for a new grouping.

    `array` has `k` heads on `axis`, shared by `num_query_heads` query heads
    (query head `i` uses head `i // (num_query_heads // k)`). The result has
    `num_key_value_heads` heads; head `j` is the mean, over the query heads
    of group `j`, of the head each of them used. Computed in float64.

    Example:

    >>> import numpy as np
    >>> pool_heads(np.array([1.0, 2.0, 3.0, 5.0]), 4, 2, axis=0)
    array([1.5, 4. ])
    """
    array = np.asarray(array, dtype=np.float64)
    k = array.shape[axis]
    per_query = np.repeat(array, num_query_heads // k, axis=axis)  # heads -> one per query head
    shape = list(per_query.shape)
    shape[axis : axis + 1] = [num_key_value_heads, num_query_heads // num_key_value_heads]
    return per_query.reshape(shape).mean(axis=axis + 1)


def _describe_multi_head(layer):
    """Sizes, config and weights (as numpy) of a MultiHeadAttention, checked."""
    _check_built(layer)
    config = layer.get_config()
    heads, key_dim, value_dim = config["num_heads"], config["key_dim"], config["value_dim"]
    if key_dim != value_dim:
        raise ValueError(
            "Received an invalid value for `layer`: expected a MultiHeadAttention with "
            "`key_dim == value_dim`, since grouped query attention has one `head_dim` "
            f"for queries, keys and values. Received: key_dim={key_dim}, value_dim={value_dim}"
        )
    query_rank = len(layer._query_dense.equation.split(",")[0])
    if query_rank != 3 or tuple(layer._attention_axes) != (1,):
        raise ValueError(
            "Received an invalid value for `layer`: expected a MultiHeadAttention built for "
            "inputs of shape (batch, sequence, features) that attends over the sequence "
            "axis. Received: a layer built for inputs of rank "
            f"{query_rank} with attention_axes={tuple(layer._attention_axes)}"
        )
    weights = _weights_of(layer)
    dims = _input_dims(weights)
    output_kernel = weights["attention_output"][0]
    if output_kernel.shape != (heads, key_dim, dims["query"]):
        raise ValueError(
            "Received an invalid value for `layer`: expected a MultiHeadAttention whose "
            "output has the query's feature size, as in GroupQueryAttention. Received: "
            f"output_shape={config['output_shape']!r} for a query with {dims['query']} "
            "features"
        )
    carried = {name: config[name] for name in _SHARED_CONFIG}
    # Keras's gated MultiHeadAttention has the same gate (m, heads, h) as the grouped layers.
    carried.update(head_dim=key_dim, num_query_heads=heads, use_gate=config.get("use_gate", False))
    return dict(config=carried, weights=weights, dims=dims, num_query_heads=heads)


def _describe_grouped(layer):
    """Sizes, config and weights (as numpy) of either GroupQueryAttention, checked."""
    _check_built(layer)
    config = layer.get_config()
    _refuse_decoder_options(config)
    weights = _weights_of(layer)
    carried = {name: config[name] for name in _SHARED_CONFIG}
    carried.update({name: config[name] for name in _GROUPED_OPTIONS if name in config})
    carried.update(head_dim=config["head_dim"], num_query_heads=config["num_query_heads"],
                   num_key_value_heads=config["num_key_value_heads"])
    return dict(config=carried, weights=weights, dims=_input_dims(weights),
                num_query_heads=config["num_query_heads"])


def _refuse_decoder_options(config):
    """Rotary embeddings, norms, soft caps and logit scales have no place in
    Keras's layer or in the pooling recipe: refuse them by name."""
    changed = {name: config[name] for name, default in DECODER_DEFAULTS.items()
               if name in config and config[name] != default}
    if changed:
        raise ValueError(
            "Received an invalid value for `layer`: expected a layer without the decoder "
            f"options ({', '.join(DECODER_DEFAULTS)}), which keras.layers.GroupQueryAttention "
            "and the head-pooling recipe cannot express. Received: "
            + ", ".join(f"{k}={v!r}" for k, v in changed.items())
        )


def _check_built(layer):
    if not layer.built or getattr(layer, "_query_dense", None) is None:
        raise ValueError(
            "Received an invalid value for `layer`: expected a built layer that holds "
            "weights (call it once on inputs, or call `layer.build(...)`). "
            f"Received: layer={_name_of(layer)} with built={layer.built}"
        )


def _weights_of(layer):
    """{projection: (kernel, bias or None)} as numpy arrays in the variables' dtype."""
    weights = {}
    for name, dense in _sublayers(layer).items():
        if getattr(dense, "quantization_mode", None) is not None:
            raise ValueError(
                "Received an invalid value for `layer`: expected unquantized projections. "
                f"Received: the `{name}` projection in quantization mode "
                f"{dense.quantization_mode!r}"
            )
        bias = None if dense.bias is None else keras.ops.convert_to_numpy(dense.bias)
        weights[name] = (keras.ops.convert_to_numpy(dense.kernel), bias)
    return weights


def _sublayers(layer):
    """{name: projection} in the weights' order; a gated layer's gate after the key."""
    sublayers = {"query": layer._query_dense, "key": layer._key_dense}
    if getattr(layer, "_gate_dense", None) is not None:
        sublayers["gate"] = layer._gate_dense
    sublayers.update(value=layer._value_dense, attention_output=layer._output_dense)
    return sublayers


def _input_dims(weights):
    """Feature sizes of query, value and key, read off the kernels (m, heads, h)."""
    return {name: int(weights[name][0].shape[0]) for name in ("query", "value", "key")}


def _new_layer(cls, config, dims, weights, overrides, source):
    fixed = sorted(set(overrides) & set(_FIXED_BY_WEIGHTS))
    if fixed:
        raise TypeError(
            f"Received invalid keyword argument(s): {', '.join(fixed)}. Expected constructor "
            "arguments that the weights do not determine (such as `name` or `dropout`). "
            f"Received: {', '.join(f'{k}={overrides[k]!r}' for k in fixed)}"
        )
    config = dict(config, dtype=source.dtype_policy, trainable=source.trainable)
    config.update(overrides)
    layer = cls(**config)
    layer.build((None, None, dims["query"]), (None, None, dims["value"]),
                (None, None, dims["key"]))
    for name, dense in _sublayers(layer).items():
        kernel, bias = weights[name]
        # Variables cast float64 means (or copies) to their dtype on assignment.
        dense.kernel.assign(kernel)
        if bias is not None:
            dense.bias.assign(bias)
    return layer


def _name_of(layer):
    name = getattr(layer, "name", None)
    kind = type(layer).__name__
    return f"<{kind} '{name}'>" if isinstance(name, str) else f"<{kind}>"
