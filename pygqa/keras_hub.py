"""keras-hub's decoder attention as pygqa layers.

- `from_keras_hub(layer)`: a built keras-hub attention layer of Llama
  (`LlamaAttention`), Mistral (`CachedMistralAttention`), Qwen 3
  (`Qwen3Attention`) or Gemma 3 (`CachedGemma3Attention`) as a pygqa
  `GroupQueryAttention` with copies of its weights and the same outputs.
- `KerasHubAttention`: a layer with keras-hub's attention call signature
  (`hidden_states, attention_mask, cache, cache_update_index`) and cache
  layouts around a pygqa layer, so that keras-hub's decoder blocks can call it.
- `swap_attention(causal_lm)`: replaces every attention layer of a keras-hub
  `CausalLM` with such a layer, in place: same logits, same `generate()`.

What the conversion carries, per architecture (read from keras-hub 0.32.0):

- Llama: rotary embeddings at `rope_max_wavelength`. Its rotary layer does not
  apply `rope_position_scaling_factor`, so neither does the converted layer;
  Llama 3.1's frequency adjustment (`rope_frequency_adjustment_factor` and its
  low/high frequency factors) becomes `rope_frequency_adjustment`.
- Mistral: rotary embeddings with linear scaling, and `sliding_window` (the
  attention class leaves the window to its decoder's mask; the converted
  layer applies it itself, which the decoder's mask then repeats).
- Qwen 3: query/key RMS norms (scale as is) before the rotation, and its
  `sliding_window_size` (keras-hub applies it only where it does not call a
  fused kernel, i.e. on TensorFlow; pygqa applies it on every backend).
- Gemma 3: kernels stored heads first (`(heads, features, head_dim)`,
  transposed here), norms that multiply by `1 + scale` (folded into the
  scale), `logit_soft_cap`, local layers' sliding window, and
  `query_head_dim_normalize=False` as `attention_scale`.

keras-hub's attention has no biases; neither has the converted layer.
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from pygqa.layer import GroupQueryAttention


def _keras_hub_classes():
    """{architecture: keras-hub attention class}; a clear error without keras-hub."""
    try:
        from keras_hub.src.models.gemma3.gemma3_attention import CachedGemma3Attention
        from keras_hub.src.models.llama.llama_attention import LlamaAttention
        from keras_hub.src.models.mistral.mistral_attention import CachedMistralAttention
        from keras_hub.src.models.qwen3.qwen3_attention import Qwen3Attention
    except ImportError as error:
        raise ImportError(
            "pygqa.from_keras_hub needs keras-hub (0.32.0 is the tested version): "
            "`pip install --no-deps keras-hub==0.32.0` (see scripts/requirements-keras-hub.txt "
            f"for why without its dependencies). The import failed with: {error}"
        ) from error
    return {
        "llama": LlamaAttention,
        "mistral": CachedMistralAttention,
        "qwen3": Qwen3Attention,
        "gemma3": CachedGemma3Attention,
    }


def _architecture(layer):
    for name, cls in _keras_hub_classes().items():
        if isinstance(layer, cls):
            return name
    raise TypeError(
        "Received an invalid value for `layer`: expected a built keras-hub attention layer "
        "of Llama (LlamaAttention), Mistral (CachedMistralAttention), Qwen 3 "
        "(Qwen3Attention) or Gemma 3 (CachedGemma3Attention). "
        f"Received: layer={type(layer).__name__}"
    )


def from_keras_hub(layer, **kwargs):
    """Converts a keras-hub decoder attention layer into `GroupQueryAttention`.

    Args:
        layer: A built `LlamaAttention`, `CachedMistralAttention`,
            `Qwen3Attention` or `CachedGemma3Attention` (text).
        **kwargs: Constructor arguments that replace the carried-over ones
            (`name`, `flash_attention`, ...).

    Returns:
        A built `GroupQueryAttention` (no biases) holding copies of the
        weights: called on the same input with the same boolean attention
        mask, it returns the same output.

    Raises:
        TypeError: `layer` is not one of these classes.
        ValueError: `layer` is not built, or uses what pygqa does not
            reproduce (Gemma's bidirectional attention), named in the
            message.

    Example:

    >>> from keras_hub.src.models.llama.llama_attention import LlamaAttention
    >>> theirs = LlamaAttention(num_query_heads=4, num_key_value_heads=2)
    >>> theirs.build((None, None, 32))
    >>> ours = from_keras_hub(theirs)
    >>> ours.rope_max_wavelength, ours.head_dim
    (10000.0, 8)
    """
    architecture = _architecture(layer)
    if not layer.built:
        raise ValueError(
            "Received an invalid value for `layer`: expected a built layer (call it once or "
            f"call `layer.build(input_shape)`). Received: layer={type(layer).__name__} with "
            "built=False"
        )
    config, weights = _DESCRIBE[architecture](layer)
    config.update(use_bias=False, dtype=layer.dtype_policy, name=layer.name)
    config.update(kwargs)
    ours = GroupQueryAttention(**config)
    hidden = weights["query"].shape[0]
    ours.build((None, None, hidden))
    ours._query_dense.kernel.assign(weights["query"])
    ours._key_dense.kernel.assign(weights["key"])
    ours._value_dense.kernel.assign(weights["value"])
    ours._output_dense.kernel.assign(weights["attention_output"])
    if ours.use_query_key_norm:
        ours._query_norm.scale.assign(weights["query_norm"])
        ours._key_norm.scale.assign(weights["key_norm"])
    return ours


def _numpy(variable):
    return ops.convert_to_numpy(variable)


def _projections(query, key, value, output):
    """Kernels (features, heads, head_dim) and (heads, head_dim, features)."""
    return {
        "query": _numpy(query.kernel),
        "key": _numpy(key.kernel),
        "value": _numpy(value.kernel),
        "attention_output": _numpy(output.kernel),
    }


def _sizes(weights):
    _, num_query_heads, head_dim = weights["query"].shape
    return dict(head_dim=int(head_dim), num_query_heads=int(num_query_heads),
                num_key_value_heads=int(weights["key"].shape[1]))


def _describe_llama(layer):
    adjustment = None
    if layer.rope_frequency_adjustment_factor is not None:  # keras-hub sets all four or none
        adjustment = dict(factor=layer.rope_frequency_adjustment_factor,
                          low_freq_factor=layer.rope_low_freq_factor,
                          high_freq_factor=layer.rope_high_freq_factor,
                          original_max_length=layer.rope_pretraining_sequence_length)
    weights = _projections(layer._query_dense, layer._key_dense, layer._value_dense,
                           layer._output_dense)
    # LlamaRotaryEmbedding computes its frequencies without its position
    # scaling factor, so the layer's rope_position_scaling_factor changes nothing.
    config = dict(_sizes(weights), dropout=float(layer.dropout),
                  rope_max_wavelength=layer.rope_max_wavelength,
                  rope_frequency_adjustment=adjustment)
    return config, weights


def _describe_mistral(layer):
    weights = _projections(layer._query_dense, layer._key_dense, layer._value_dense,
                           layer._output_dense)
    config = dict(_sizes(weights), dropout=float(layer._dropout),
                  rope_max_wavelength=layer._rope_max_wavelength,
                  rope_scaling_factor=layer._rope_scaling_factor,
                  sliding_window=layer._sliding_window)
    return config, weights


def _describe_qwen3(layer):
    weights = _projections(layer._query_dense, layer._key_dense, layer._value_dense,
                           layer._output_dense)
    weights["query_norm"] = _numpy(layer._query_dense_layer_norm.scale)
    weights["key_norm"] = _numpy(layer._key_dense_layer_norm.scale)
    config = dict(_sizes(weights), dropout=float(layer.dropout),
                  rope_max_wavelength=layer.rope_max_wavelength,
                  rope_scaling_factor=layer.rope_scaling_factor,
                  use_query_key_norm=True, layer_norm_epsilon=layer.layer_norm_epsilon,
                  sliding_window=layer.sliding_window_size or None)
    return config, weights


def _describe_gemma3(layer):
    if layer.use_bidirectional_attention:
        raise ValueError(
            "Received an invalid value for `layer`: expected causal Gemma 3 attention; "
            "pygqa does not reproduce the bidirectional sliding window of embedding models. "
            "Received: use_bidirectional_attention=True"
        )
    weights = {
        # Gemma stores heads first: (heads, features, head_dim) -> (features, heads, head_dim).
        "query": np.transpose(_numpy(layer.query_dense.kernel), (1, 0, 2)),
        "key": np.transpose(_numpy(layer.key_dense.kernel), (1, 0, 2)),
        "value": np.transpose(_numpy(layer.value_dense.kernel), (1, 0, 2)),
        "attention_output": _numpy(layer.output_dense.kernel),
    }
    config = dict(_sizes(weights), dropout=float(layer.dropout),
                  rope_max_wavelength=layer.rope_wavelength,
                  rope_scaling_factor=layer.rope_scaling_factor,
                  logit_soft_cap=layer.logit_soft_cap)
    if layer.use_sliding_window_attention:
        config["sliding_window"] = layer.sliding_window_size
    if not layer.query_head_dim_normalize:
        config["attention_scale"] = 1.0 / math.sqrt(layer.hidden_dim // layer.num_query_heads)
    if layer.use_query_key_norm:
        config.update(use_query_key_norm=True, layer_norm_epsilon=layer.layer_norm_epsilon)
        # Gemma's norm multiplies by (1 + scale); pygqa's by its scale.
        for name in ("query_norm", "key_norm"):
            scale = _numpy(getattr(layer, name).scale).astype("float32")
            weights[name] = 1.0 + scale
    return config, weights


_DESCRIBE = {
    "llama": _describe_llama,
    "mistral": _describe_mistral,
    "qwen3": _describe_qwen3,
    "gemma3": _describe_gemma3,
}


@keras.saving.register_keras_serializable(package="pygqa")
class KerasHubAttention(keras.layers.Layer):
    """pygqa's attention behind keras-hub's attention call signature.

    keras-hub's decoder blocks call their attention as `attention(hidden_states,
    attention_mask=..., cache=..., cache_update_index=...)` with a boolean
    (batch, T, S) mask that already holds the causal and padding masks (and
    Mistral's window). Llama, Mistral and Qwen 3 pass one cache tensor
    (batch, 2, max_length, kv_heads, head_dim), pygqa's own layout; Gemma 3 a
    `(keys, values)` pair of (batch, max_length, kv_heads, head_dim) tensors
    and a `cache_update_mask` (batch, T): rows where it is False keep the
    cached keys/values (prompt positions during `generate()`). Keys are rotated
    by their positions when written, as keras-hub does, so the cache is
    interchangeable with keras-hub's.

    Args:
        attention: A built `pygqa.GroupQueryAttention` (e.g. from
            `from_keras_hub`).
        **kwargs: Base layer options.
    """

    def __init__(self, attention, **kwargs):
        super().__init__(**kwargs)
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        self.attention = attention

    def call(
        self,
        hidden_states,
        attention_mask=None,
        cache=None,
        cache_update_index=None,
        cache_update_mask=None,
        training=None,
    ):
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
        if cache is None:
            return self.attention(hidden_states, attention_mask=attention_mask,
                                  training=training)
        pair = isinstance(cache, (tuple, list))
        if pair:
            cache = ops.stack(list(cache), axis=1)  # (b, 2, L, k, h)
        before = cache
        with _window_within(self.attention, cache.shape[2]):
            output, cache = self.attention(
                hidden_states, attention_mask=attention_mask, cache=cache,
                cache_update_index=cache_update_index, training=training,
            )
        if cache_update_mask is not None and cache_update_index is not None:
            cache = _keep_unmasked_rows(before, cache, cache_update_mask, cache_update_index)
        if pair:
            cache = (cache[:, 0], cache[:, 1])
        return output, cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(),
                "attention": keras.saving.serialize_keras_object(self.attention)}


@contextlib.contextmanager
def _window_within(layer, max_length):
    """Lifts a sliding window that a cache of `max_length` slots cannot exceed.

    keras-hub's caches hold every position of a `generate()` call (slot =
    position). When the window is at least `max_length`, every two slots are
    less than the window apart, so the window masks nothing; pygqa's rolling
    cache would still ask for room for the window, which such a cache need not
    have. The window is lifted for this call only.
    """
    window = layer.sliding_window
    if window is None or max_length is None or window < max_length:
        yield
        return
    layer.sliding_window = None
    try:
        yield
    finally:
        layer.sliding_window = window


def _keep_unmasked_rows(before, after, update_mask, index):
    """`after` where the written row's `update_mask` is True, else `before` (Gemma 3)."""
    batch, max_length = ops.shape(before)[0], ops.shape(before)[2]
    keep_new = ops.ones((batch, max_length), "int32")
    keep_new = ops.slice_update(keep_new, (0, index), ops.cast(update_mask, "int32"))
    keep_new = ops.cast(keep_new, "bool")[:, None, :, None, None]  # (b, 1, L, 1, 1)
    return ops.where(keep_new, after, before)


def _decoder_attention_name(decoder):
    for name in ("_self_attention_layer", "attention"):
        if getattr(decoder, name, None) is not None:
            return name
    raise TypeError(
        "Received an invalid value for `causal_lm`: expected decoder blocks that keep their "
        "attention in `_self_attention_layer` (Llama, Mistral, Qwen 3) or `attention` "
        f"(Gemma 3). Received: a block of type {type(decoder).__name__}"
    )


def swap_attention(causal_lm, **kwargs):
    """Replaces every attention layer of a keras-hub `CausalLM` with pygqa's, in place.

    Each decoder block's attention becomes a `KerasHubAttention` around
    `from_keras_hub(attention, **kwargs)` with the same weights; the decoder
    blocks, embeddings and the model's `generate()` stay keras-hub's. The
    cache stays at key/value head width (keras-hub repeats keys and values to
    the query heads on every call; pygqa never does).

    Args:
        causal_lm: A built `LlamaCausalLM`, `MistralCausalLM`, `Qwen3CausalLM`
            or `Gemma3CausalLM` (text).
        **kwargs: Passed to `from_keras_hub` for every layer.

    Returns:
        The list of the new `GroupQueryAttention` layers, one per block.

    Saving: `save_weights()` / `load_weights()` move the weights between
    swapped models (tested: identical logits). A whole-model `.keras` file
    rebuilds keras-hub's attention from the blocks' configs, so save the
    model before swapping and swap after loading.

    Example:

    >>> import keras_hub
    >>> backbone = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=2,
    ...     num_query_heads=4, num_key_value_heads=2, hidden_dim=32, intermediate_dim=64)
    >>> lm = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    >>> len(swap_attention(lm))
    2
    """
    backbone = getattr(causal_lm, "backbone", None)
    decoders = getattr(backbone, "transformer_layers", None)
    if not decoders:
        raise TypeError(
            "Received an invalid value for `causal_lm`: expected a keras-hub CausalLM whose "
            "backbone has `transformer_layers`. Received: "
            f"causal_lm={type(causal_lm).__name__}"
        )
    swapped = []
    for decoder in decoders:
        name = _decoder_attention_name(decoder)
        theirs = getattr(decoder, name)
        if isinstance(theirs, KerasHubAttention):
            raise ValueError(
                "Received an invalid value for `causal_lm`: its attention is already pygqa's "
                f"(block {decoder.name!r}). Received: causal_lm={causal_lm.name!r}"
            )
        ours = from_keras_hub(theirs, **kwargs)
        adapter = KerasHubAttention(ours, name=theirs.name, dtype=theirs.dtype_policy)
        adapter.built = True
        # Swap it in the block's tracked sublayers too, so that the model's
        # weights are the new layer's (in the old one's place).
        decoder._tracker.replace_tracked_value("layers", theirs, adapter)
        object.__setattr__(decoder, name, adapter)
        swapped.append(ours)
    # The compiled generate function closes over the old layers.
    causal_lm.generate_function = None
    return swapped
