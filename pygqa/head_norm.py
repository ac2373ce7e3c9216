"""`HeadRMSNorm`: RMS normalisation of each attention head over its features.

Qwen 3 and Gemma 3 normalise every projected query and key head before the
rotary embedding: `x / sqrt(mean(x**2) + epsilon) * scale`, with one learned
`scale` of shape (head_dim,) shared by all heads. The statistics are computed
in float32 whatever the compute dtype, and the result cast back.

Gemma's own layer multiplies by `1 + scale` (its scale starts at 0);
`pygqa.from_keras_hub` folds that into this layer's scale.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pygqa")
class HeadRMSNorm(keras.layers.Layer):
    """RMS norm over the last axis of (batch, T, heads, head_dim), scale (head_dim,)."""

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(input_shape[-1],), initializer="ones", trainable=True
        )

    def call(self, x):
        dtype = x.dtype
        x = ops.cast(x, "float32")
        mean_square = ops.mean(ops.square(x), axis=-1, keepdims=True)  # (b, t, heads, 1)
        x = x * ops.rsqrt(mean_square + self.epsilon)
        return ops.cast(x * ops.cast(self.scale, "float32"), dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
