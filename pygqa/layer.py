"""`GroupQueryAttention`: the Keras layer."""

import threading

import keras
from keras import constraints, initializers, ops, regularizers
from keras.layers import EinsumDense

# Keras's own accessor for the mask attached to a tensor (not exported under
# keras.backend). Under jax.jit a tracer cannot carry attributes, so Keras keeps
# its mask in a side table that only this accessor reads.
from keras.src.backend import get_keras_mask

from pygqa import cache as kv_cache
from pygqa import rotary, saving, validation
from pygqa.attention import grouped_attention
from pygqa.head_norm import HeadRMSNorm
from pygqa.kernels.numerics import combine_masks

# Keyword arguments accepted through **kwargs: the base layer's options, and
# the later Keras arguments that the reference page does not name.
_BASE_LAYER_KWARGS = ("name", "dtype", "trainable", "autocast")
_EXTRA_KWARGS = (
    "seed", "flash_attention", "sliding_window", "use_gate",
    # Decoder language models (Llama, Mistral, Qwen, Gemma):
    "rope_max_wavelength", "rope_scaling_factor", "use_query_key_norm", "layer_norm_epsilon",
    "logit_soft_cap", "attention_scale", "rope_frequency_adjustment",
)
# Their defaults: a layer with these values is plain grouped query attention.
DECODER_DEFAULTS = {
    "rope_max_wavelength": None,
    "rope_scaling_factor": 1.0,
    "use_query_key_norm": False,
    "layer_norm_epsilon": 1e-6,
    "logit_soft_cap": None,
    "attention_scale": None,
    "rope_frequency_adjustment": None,
}

# Offsets added to `seed` for each initializer, so that no two weights share a seed.
_SEED_OFFSETS = {"query": 0, "key": 1, "value": 2, "attention_output": 3, "gate": 4}

# Serialises builds: threads whose first calls race on one unbuilt layer would
# otherwise each create the weights (Keras then refuses the second set).
_BUILD_LOCK = threading.RLock()


# How each decoder option is checked: f(name, value) -> the value to keep.
_DECODER_CHECKS = {
    "rope_max_wavelength": validation.optional_positive_number,
    "rope_scaling_factor": validation.positive_number,
    "use_query_key_norm": validation.boolean,
    "layer_norm_epsilon": validation.positive_number,
    "logit_soft_cap": validation.optional_positive_number,
    "attention_scale": validation.optional_positive_number,
    "rope_frequency_adjustment": lambda name, value: rotary.check_adjustment(value),
}


def _decoder_options(kwargs):
    """Pops and checks the decoder options from `kwargs`; returns them with defaults."""
    return {name: _DECODER_CHECKS[name](name, kwargs.pop(name, default))
            for name, default in DECODER_DEFAULTS.items()}


@keras.saving.register_keras_serializable(package="pygqa")
class GroupQueryAttention(keras.layers.Layer):
    """Grouped Query Attention layer (Ainslie et al., 2023).

    Query heads are split into `num_key_value_heads` groups of equal size and
    every group shares one key head and one value head. With 8 query heads and
    2 key/value heads, query heads 0-3 attend with key/value head 0 and query
    heads 4-7 with key/value head 1 (query head `i` uses key/value head
    `i // (num_query_heads // num_key_value_heads)`). One key/value head is
    multi-query attention; as many as query heads is multi-head attention.

    The weights have the names, shapes and order of
    `keras.layers.GroupQueryAttention`, so weights move between the two with
    `get_weights()` / `set_weights()`. Unlike that layer, key and value are
    never repeated to the query's head count, `value` may be omitted for
    self-attention, and a query position whose keys are all masked always gets
    zero attention (its output is the output bias) on every backend and path.

    Args:
        head_dim: Size of each attention head (for query, key and value).
        num_query_heads: Number of query heads.
        num_key_value_heads: Number of key/value heads; must divide
            `num_query_heads`.
        dropout: Dropout rate applied to the attention probabilities during
            training, in `[0, 1)`.
        use_bias: Whether the four projections have biases.
        kernel_initializer: Initializer for the projection kernels.
        bias_initializer: Initializer for the projection biases.
        kernel_regularizer: Regularizer for the projection kernels.
        bias_regularizer: Regularizer for the projection biases.
        activity_regularizer: Regularizer for the projections' outputs.
        kernel_constraint: Constraint for the projection kernels.
        bias_constraint: Constraint for the projection biases.
        **kwargs: Base layer options (`name`, `dtype`, `trainable`,
            `autocast`), and two arguments of later Keras versions:
            `seed`, an integer that seeds dropout and every initializer that
            has no seed of its own; `flash_attention`, which attention path
            runs: None (default) chooses the fastest path for the call;
            True requires the backend's fused, memory-efficient kernel and
            raises a ValueError for a call that cannot use it (attention
            scores requested, dropout in training); False always computes
            the explicit softmax(QK^T)V path. Every path gives the same
            numbers. With None, `keras.config.disable_flash_attention()`
            means False. `sliding_window` (None or a positive integer):
            query position `t` attends only to key positions `s` with
            `|t - s| < sliding_window`; with `use_causal_mask=True` this is
            the causal sliding window of Mistral or Phi-3. `use_gate` (bool,
            default False): gated attention (arXiv 2505.06708), a `gate`
            projection of the query, `sigmoid(query @ gate_kernel + bias)`
            of shape `(batch, T, num_query_heads, head_dim)`, multiplies
            each head's attention output before the output projection.
            The options of decoder language models (Llama, Mistral, Qwen 3,
            Gemma 3; see `pygqa.from_keras_hub`), applied to the projected
            heads before attention: `rope_max_wavelength` (None, default:
            off; else a positive number such as 10000): rotary position
            embeddings on query and key, the half-split convention of
            `keras_hub.layers.RotaryEmbedding` (pygqa/rotary.py; head_dim
            must be even); `rope_scaling_factor` (default 1.0): positions
            are divided by it (linear position interpolation);
            `use_query_key_norm` (default False): an RMS norm of every query
            and key head over its features with a learned `scale` of shape
            (head_dim,), before the rotation (Qwen 3 and Gemma 3 order);
            `layer_norm_epsilon` (default 1e-6): that norm's epsilon;
            `logit_soft_cap` (None, default: off; else a positive number):
            logits become `cap * tanh(logits / cap)` before the mask and
            the softmax (Gemma 2; computed on the explicit path, so
            `flash_attention=True` raises); `attention_scale` (None,
            default: `1/sqrt(head_dim)`): the factor of the logits (Gemma's
            `query_pre_attn_scalar ** -0.5`); `rope_frequency_adjustment`
            (None, or a dict of `factor`, `low_freq_factor`,
            `high_freq_factor`, `original_max_length`): Llama 3.1's slower
            low frequencies (see `pygqa.rotary.inverse_frequencies`).

    Weights, in the order of `get_weights()`: `query/kernel`, `query/bias`,
    `key/kernel`, `key/bias`, [`gate/kernel`, `gate/bias`,] `value/kernel`,
    `value/bias`, `attention_output/kernel`, `attention_output/bias` (Keras's
    layer's order; biases only with `use_bias`), then, with
    `use_query_key_norm`, `query_norm/scale` and `key_norm/scale`, both
    `(head_dim,)`.

    Call arguments:
        query: Query tensor `(batch, target_length, query_dim)`.
        value: Value tensor `(batch, source_length, value_dim)`. Defaults to
            `query` (self-attention), together with its mask.
        key: Key tensor `(batch, source_length, key_dim)`. Defaults to `value`.
        query_mask: Boolean `(batch, target_length)`; False drops a query row.
        value_mask: Boolean `(batch, source_length)`; False drops a position.
        key_mask: Boolean `(batch, source_length)`; False drops a position.
        attention_mask: Boolean `(batch, target_length, source_length)`; True
            lets a query position attend to a key position.
        return_attention_scores: Also return the attention probabilities.
        training: Whether dropout is active.
        use_causal_mask: Mask future positions (top-left aligned when the
            lengths differ; with a cache, query row `r` is position
            `cache_update_index + r`).
        cache: Key/value cache for incremental decoding,
            `(batch, 2, max_length, num_key_value_heads, head_dim)`, e.g. from
            `empty_cache()`. The query then attends over the cache's
            positions (masks on keys have length `max_length`).
        cache_update_index: Number of positions already in the cache (an int
            or an integer scalar tensor). The new keys/values are written
            there and positions after them are masked. None reads the cache
            as it is, ignoring `value` and `key`.
        positions: Integer positions of the query rows for the rotary
            embedding, `(target_length,)` or `(batch, target_length)` (e.g.
            `cumsum(padding_mask) - 1` for a left-padded batch). Keys of the
            query's length (self-attention, and the rows a decoding step
            writes into the cache) take the same positions; keys of another
            length are at `arange(source_length)`. Default:
            `cache_update_index + arange(target_length)` with a cache, else
            `arange(target_length)`. A cached key is rotated once, when it is
            written, so decoding step by step equals one causal call. Only
            with `rope_max_wavelength`.

    Returns:
        attention_output: `(batch, target_length, query_dim)`.
        attention_scores: with `return_attention_scores=True`, the
            probabilities before dropout,
            `(batch, num_query_heads, target_length, source_length)`.
        cache: with `cache`, last, the cache after the update.

    Raises:
        TypeError, ValueError: for invalid constructor arguments or inputs,
            naming the argument and the value received.

    Example:

    >>> import numpy as np
    >>> layer = GroupQueryAttention(head_dim=16, num_query_heads=8, num_key_value_heads=2)
    >>> x = np.random.normal(size=(2, 10, 32)).astype("float32")
    >>> layer(x, use_causal_mask=True).shape
    (2, 10, 32)
    """

    def __init__(
        self,
        head_dim,
        num_query_heads,
        num_key_value_heads,
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
        seed = validation.optional_seed(kwargs.pop("seed", None))
        flash_attention = validation.optional_boolean(
            "flash_attention", kwargs.pop("flash_attention", None)
        )
        sliding_window = validation.optional_positive_int(
            "sliding_window", kwargs.pop("sliding_window", None)
        )
        use_gate = validation.boolean("use_gate", kwargs.pop("use_gate", False))
        decoder = _decoder_options(kwargs)
        unknown = sorted(set(kwargs) - set(_BASE_LAYER_KWARGS))
        if unknown:
            raise TypeError(
                "Received unknown keyword argument(s) for `GroupQueryAttention`: "
                f"{', '.join(unknown)}. Expected the constructor's named arguments "
                f"or one of: {', '.join(_BASE_LAYER_KWARGS + _EXTRA_KWARGS)}. "
                f"Received: {', '.join(f'{k}={kwargs[k]!r}' for k in unknown)}"
            )
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.supports_masking = True
        self.head_dim = validation.positive_int("head_dim", head_dim)
        self.num_query_heads, self.num_key_value_heads = validation.head_counts(
            num_query_heads, num_key_value_heads
        )
        self.dropout = validation.dropout_rate(dropout)
        self.use_bias = validation.boolean("use_bias", use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.seed = seed
        self.flash_attention = flash_attention
        self.sliding_window = sliding_window
        self.use_gate = use_gate
        if decoder["rope_max_wavelength"] is not None and self.head_dim % 2:
            raise ValueError(
                "Received an invalid value for `head_dim`: expected an even number with "
                "`rope_max_wavelength` set (the rotation turns pairs of features, the first "
                f"half of a head with the second). Received: head_dim={self.head_dim}, "
                f"rope_max_wavelength={decoder['rope_max_wavelength']}"
            )
        for name, value in decoder.items():
            setattr(self, name, value)
        self.seed_generator = (
            keras.random.SeedGenerator(seed) if self.dropout > 0.0 else None
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        with _BUILD_LOCK:
            if getattr(self, "_built_dims", None) is not None:
                return  # another thread's first call built it while this one waited
            value_shape = query_shape if value_shape is None else value_shape
            key_shape = value_shape if key_shape is None else key_shape
            validation.input_shapes(query_shape, value_shape, key_shape)
            validation.weights_fit_in_memory(
                {"head_dim": self.head_dim, "num_query_heads": self.num_query_heads,
                 "num_key_value_heads": self.num_key_value_heads},
                {"query": query_shape[-1], "value": value_shape[-1], "key": key_shape[-1]},
                self.use_bias, self.dtype_policy.variable_dtype,
            )
            # b batch, t/s positions, m features, u query heads, k key/value heads, h head dim.
            u, k = self.num_query_heads, self.num_key_value_heads
            self._query_dense = self._projection("query", "btm,muh->btuh", (None, u), "uh")
            self._key_dense = self._projection("key", "bsm,mkh->bskh", (None, k), "kh")
            # The gate is made between key and value: Keras's weight order.
            self._gate_dense = None
            if self.use_gate:
                self._gate_dense = self._projection(
                    "gate", "btm,muh->btuh", (None, u), "uh", activation="sigmoid"
                )
            self._value_dense = self._projection("value", "bsm,mkh->bskh", (None, k), "kh")
            self._output_dense = EinsumDense(
                "btuh,uhm->btm",
                output_shape=(None, query_shape[-1]),
                bias_axes="m" if self.use_bias else None,
                name="attention_output",
                **self._sublayer_kwargs("attention_output"),
            )
            for projection in (self._query_dense, self._key_dense, self._value_dense):
                # Inputs may carry Keras masks; the projections pass them through
                # instead of warning that they drop them (this layer uses them).
                projection.supports_masking = True
            self._query_dense.build(query_shape)
            self._key_dense.build(key_shape)
            if self._gate_dense is not None:
                self._gate_dense.build(query_shape)
            self._value_dense.build(value_shape)
            self._output_dense.build((None, None, u, self.head_dim))
            # The norms come last, so that the weights Keras's layer has keep
            # their order in get_weights(): ..., attention_output, then
            # query_norm/scale and key_norm/scale.
            self._query_norm = self._key_norm = None
            if self.use_query_key_norm:
                self._query_norm, self._key_norm = (
                    HeadRMSNorm(self.layer_norm_epsilon, name=name, dtype=self.dtype_policy)
                    for name in ("query_norm", "key_norm")
                )
                self._query_norm.build((None, None, u, self.head_dim))
                self._key_norm.build((None, None, k, self.head_dim))
            self._built_dims = {
                "query": query_shape[-1],
                "value": value_shape[-1],
                "key": key_shape[-1],
            }

    def __call__(self, *args, **kwargs):
        # Keras builds the layer from the shapes of the tensor arguments before
        # `call` runs; a query that is not a tensor would fail there, unnamed.
        query = args[0] if args else kwargs.get("query")
        validation.array_like("query", query, "a floating-point tensor or array of rank 3")
        return super().__call__(*args, **kwargs)

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        positions=None,
    ):
        if value is None:  # Self-attention: the query is also value and key, mask included.
            if query_mask is None:
                # With a single tensor argument Keras fills `mask`, not `query_mask`.
                query_mask = get_keras_mask(query)
            value = query
            if cache is None:  # With a cache, keys are cache positions, not query rows.
                value_mask = query_mask if value_mask is None else value_mask
        if key is None:
            key = value
        cache_update_index = kv_cache.update_index(cache_update_index)
        causal = validation.boolean("use_causal_mask", use_causal_mask)
        return_attention_scores = validation.boolean(
            "return_attention_scores", return_attention_scores
        )
        self._check_inputs(
            query, value, key, query_mask, value_mask, key_mask, attention_mask,
            cache, cache_update_index,
        )
        positions = rotary.check_positions(
            positions, query.shape[0], query.shape[1], self.rope_max_wavelength
        )
        query_positions, key_positions = self._rotary_positions(
            positions, query, key, cache_update_index if cache is not None else None
        )
        heads = self._transform(self._query_dense(query), self._query_norm, query_positions)

        if cache is None:
            value = self._value_dense(value)  # (b, s, k, h)
            key = self._transform(self._key_dense(key), self._key_norm, key_positions)
            slots = None  # The causal mask stays a flag: kernels have a causal mode.
        else:
            new_length = ops.shape(value)[1]
            if cache_update_index is not None:
                write = kv_cache.write if self.sliding_window is None else kv_cache.write_rolling
                # Keys are normalised and rotated by their own positions once, here.
                new_key = self._transform(self._key_dense(key), self._key_norm, key_positions)
                cache = write(cache, new_key, self._value_dense(value), cache_update_index)
            # (b, L, k, h), in the compute dtype whatever dtype the cache was made in.
            key, value = (ops.cast(cache[:, i], self.compute_dtype) for i in (0, 1))
            slots = kv_cache.positions_mask(
                ops.shape(query)[1], new_length, ops.shape(cache)[2],
                cache_update_index, causal, self.sliding_window,
            )
            causal = False  # Folded into `slots`, which knows the query's offset.
        mask = combine_masks(query_mask, value_mask, key_mask, attention_mask, slots)
        result = grouped_attention(
            heads,  # (b, t, u, h)
            key,
            value,
            mask=mask,
            causal=causal,
            window=self.sliding_window if cache is None else None,  # the cache folds it in
            return_scores=return_attention_scores,
            dropout=self.dropout,
            training=training,
            seed_generator=self.seed_generator,
            flash_attention=self._flash_attention_setting(),
            scale=self.attention_scale,
            soft_cap=self.logit_soft_cap,
        )
        output, scores = result if return_attention_scores else (result, None)
        if self._gate_dense is not None:
            output = output * self._gate_dense(query)  # (b, t, u, h), gates in (0, 1)
        outputs = (self._output_dense(output),)  # (b, t, m)
        if return_attention_scores:
            outputs += (scores,)  # (b, u, t, s)
        if cache is not None:
            outputs += (cache,)
        return outputs if len(outputs) > 1 else outputs[0]

    def _rotary_positions(self, positions, query, key, cache_update_index):
        """Positions (batch or 1, length) of the query rows and of the new key rows.

        Query rows: `positions`, else `cache_update_index + arange(T)` with a
        cache and `arange(T)` without. Keys of the same length as the query
        (self-attention, and the rows a decoding step writes) share the
        query's positions; keys of another length are at `arange(S)` (from
        the index with a cache).
        """
        if self.rope_max_wavelength is None:
            return None, None
        target, source = query.shape[1], key.shape[1]
        if positions is None:
            positions = rotary.default_positions(ops.shape(query)[1], cache_update_index)
        if key is query or (target is not None and target == source):
            return positions, positions
        return positions, rotary.default_positions(ops.shape(key)[1], cache_update_index)

    def _transform(self, heads, norm, positions):
        """Projected heads (b, t, heads, h): RMS-normalised, then rotated (Qwen 3 order)."""
        if norm is not None:
            heads = norm(heads)
        if positions is not None:
            heads = rotary.rotate(
                heads, positions, self.rope_max_wavelength, self.rope_scaling_factor,
                self.rope_frequency_adjustment,
            )
        return heads

    def _flash_attention_setting(self):
        """The layer's `flash_attention`, or else Keras's global switch: None by
        default and after `keras.config.enable_flash_attention()` (choose),
        False after `keras.config.disable_flash_attention()`."""
        if self.flash_attention is not None:
            return self.flash_attention
        return keras.config.is_flash_attention_enabled()

    def empty_cache(self, batch_size, max_length, dtype=None):
        """A zero key/value cache for this layer, for decoding.

        Args:
            batch_size: Batch size of the queries that will use it.
            max_length: Number of positions it holds.
            dtype: Defaults to the layer's compute dtype (float16 under
                `"mixed_float16"`).

        Returns:
            A zero tensor `(batch_size, 2, max_length, num_key_value_heads,
            head_dim)`: keys in `[:, 0]`, values in `[:, 1]`.
        """
        return kv_cache.empty_cache(
            batch_size, max_length, self.num_key_value_heads, self.head_dim,
            dtype or self.compute_dtype,
        )

    def _projection(self, name, equation, output_shape, bias_axes, activation=None):
        return EinsumDense(
            equation,
            output_shape=output_shape + (self.head_dim,),
            bias_axes=bias_axes if self.use_bias else None,
            activation=activation,
            name=name,
            **self._sublayer_kwargs(name),
        )

    def _sublayer_kwargs(self, name):
        # Each sublayer gets its own initializer instances. A seeded initializer
        # (or a layer seed) is given a different seed per sublayer: cloning it
        # unchanged would give query, key and value identical kernels.
        offset = _SEED_OFFSETS[name]
        return dict(
            kernel_initializer=self._seeded_clone(self.kernel_initializer, 2 * offset),
            bias_initializer=self._seeded_clone(self.bias_initializer, 2 * offset + 1),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self.dtype_policy,
        )

    def _seeded_clone(self, initializer, offset):
        config = initializer.get_config()
        if "seed" in config:
            base = config["seed"] if isinstance(config["seed"], int) else self.seed
            if base is not None:
                config["seed"] = base + offset
        return initializer.__class__.from_config(config)

    def _check_inputs(
        self, query, value, key, query_mask, value_mask, key_mask, attention_mask,
        cache=None, cache_update_index=None,
    ):
        validation.input_shapes(
            *validation.tensor_shapes(query, value, key), getattr(self, "_built_dims", None)
        )
        batch, target, source = query.shape[0], query.shape[1], value.shape[1]
        if cache is not None:
            kv_cache.check(cache.shape, cache_update_index, query.shape, value.shape,
                           self.num_key_value_heads, self.head_dim, self.sliding_window)
            source = cache.shape[2]  # Keys and values are the cache's positions.
        for name, mask, expected in (
            ("query_mask", query_mask, (batch, target)),
            ("value_mask", value_mask, (batch, source)),
            ("key_mask", key_mask, (batch, source)),
            ("attention_mask", attention_mask, (batch, target, source)),
        ):
            if mask is not None:
                validation.mask(name, mask, expected)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        validation.input_shapes(
            query_shape, value_shape, key_shape, getattr(self, "_built_dims", None)
        )
        return tuple(query_shape)

    def compute_output_spec(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        cache=None,
        cache_update_index=None,
        positions=None,
    ):
        value = query if value is None else value
        key = value if key is None else key
        cache_update_index = kv_cache.update_index(cache_update_index)
        self._check_inputs(
            query, value, key, query_mask, value_mask, key_mask, attention_mask,
            cache, cache_update_index,
        )
        rotary.check_positions(positions, query.shape[0], query.shape[1],
                               self.rope_max_wavelength)
        outputs = (keras.KerasTensor(query.shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            source = value.shape[1] if cache is None else cache.shape[2]
            scores_shape = (query.shape[0], self.num_query_heads, query.shape[1], source)
            outputs += (keras.KerasTensor(scores_shape, dtype=self.compute_dtype),)
        if cache is not None:
            outputs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return outputs if len(outputs) > 1 else outputs[0]

    def get_config(self):
        config = {
            "head_dim": self.head_dim,
            "num_query_heads": self.num_query_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "seed": self.seed,
            "flash_attention": self.flash_attention,
            "sliding_window": self.sliding_window,
            "use_gate": self.use_gate,
            **{name: getattr(self, name) for name in DECODER_DEFAULTS},
            # Which pygqa wrote the config; from_config refuses incompatible versions.
            saving.VERSION_KEY: saving.installed_version(),
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        saving.check_version(config.pop(saving.VERSION_KEY, None))
        return super().from_config(config)
