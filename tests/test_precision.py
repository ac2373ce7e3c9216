"""Half-precision policies and extreme logits: finite outputs close to float32."""

import keras
import numpy as np
import pytest
from helpers import inputs, to_numpy
from keras import ops

import pygqa


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_mixed_precision_is_close_to_float32(policy, scores, rng):
    q, v, k = inputs(rng, batch=2, target=9, source=11)
    reference = pygqa.GroupQueryAttention(8, 4, 2)
    half = pygqa.GroupQueryAttention(8, 4, 2, dtype=policy)
    reference(q, v, k), half(q, v, k)
    half.set_weights(reference.get_weights())
    mask = rng.random((2, 9, 11)) < 0.5
    mask[0, 0] = False
    expected = reference(q, v, k, attention_mask=mask, return_attention_scores=scores)
    got = half(q, v, k, attention_mask=mask, return_attention_scores=scores)
    if scores:
        (expected, _), (got, _) = expected, got
    assert keras.backend.standardize_dtype(got.dtype) == policy.split("_")[1]
    got = to_numpy(got).astype("float32")
    assert np.isfinite(got).all()
    # float16 keeps ~3 decimal digits, bfloat16 ~2: relative to the output's scale.
    tolerance = 1e-2 if policy == "mixed_float16" else 6e-2
    np.testing.assert_allclose(got, to_numpy(expected), atol=tolerance * np.abs(got).max())


@pytest.mark.parametrize("dtype", ["float32", "mixed_float16"])
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_logits_of_magnitude_1e4_stay_finite(dtype, scores, rng):
    q, _, _ = inputs(rng, batch=1, target=6)
    layer = pygqa.GroupQueryAttention(4, 2, 1, dtype=dtype)
    layer(q)
    weights = layer.get_weights()
    weights[0] = weights[0] * 300.0  # query kernel: logits reach ~1e4
    weights[2] = weights[2] * 300.0  # key kernel
    layer.set_weights(weights)
    result = layer(q, use_causal_mask=True, return_attention_scores=scores)
    out = result[0] if scores else result
    assert np.isfinite(to_numpy(out).astype("float32")).all()
    if scores:
        probs = to_numpy(result[1]).astype("float32")
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-2)


@pytest.mark.parametrize("options", [{"return_attention_scores": True}, {"flash_attention": False}],
                         ids=["scores", "explicit"])
def test_the_explicit_path_in_bfloat16_products_is_as_accurate_as_keras(monkeypatch, options):
    """Where the CPU multiplies bfloat16 natively, the explicit path keeps its products in
    bfloat16 (softmax in float32): its error against float64 may not exceed Keras's
    (same policy, same weights) by more than a quarter. Forced here on any CPU."""
    from pygqa import kernels
    from pygqa.bench import impls, reference

    layers = impls.build_layers(["pygqa", "keras_gqa"], policy="mixed_bfloat16")
    layers["pygqa"].flash_attention = options.get("flash_attention")
    kwargs = {k: v for k, v in options.items() if k == "return_attention_scores"}
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 64, impls.D_MODEL)).astype("float32")
    expected = reference.gqa_forward(impls.gqa_weights(), x, causal=True)

    def output(layer):
        out = layer(x, x, use_causal_mask=True, **kwargs)
        out = out[0] if kwargs else out
        return np.asarray(to_numpy(ops.cast(out, "float32")), np.float64)

    upcast = output(layers["pygqa"])  # whatever this machine's device says
    monkeypatch.setattr(kernels, "current_device",
                        lambda backend, tensor=None: kernels.Device("cpu", None, True))
    ours, theirs = output(layers["pygqa"]), output(layers["keras_gqa"])
    errors = {name: np.abs(got - expected).max() / np.abs(expected).max()
              for name, got in (("pygqa", ours), ("keras_gqa", theirs), ("upcast", upcast))}
    assert 1e-4 < errors["pygqa"] <= 1.25 * errors["keras_gqa"], errors
    assert errors["upcast"] <= 1.25 * errors["keras_gqa"], errors


@pytest.mark.parametrize("window", [None, 64], ids=["blockwise", "band"])
def test_the_block_kernels_in_bfloat16_products_are_as_accurate_as_keras(monkeypatch, window):
    """Where the CPU multiplies bfloat16 natively, TensorFlow's blockwise and band kernels
    keep their products in bfloat16 (softmax, its backward pass and the gradient sums in
    float32). The output (against the float64 reference) and the input's gradient
    (against the float32 layer's, through query, key and value) may not be more than a
    quarter less accurate than Keras's layer under the same policy (`sliding_window`
    given to both). The device is forced here, so the test runs on any CPU; on the
    other backends it holds their own paths to the same rule."""
    from gradients import vjp

    from pygqa import kernels
    from pygqa.bench import impls, reference

    monkeypatch.setattr(kernels, "current_device",
                        lambda backend, tensor=None: kernels.Device("cpu", None, True))
    if keras.backend.backend() == "tensorflow":
        chosen = kernels.choose_path("tensorflow", kernels.current_device("tensorflow"),
                                     "bfloat16", head_dim=impls.HEAD_DIM, target_length=256,
                                     source_length=256, masked=False, causal=True,
                                     window=window)
        assert (chosen.name, chosen.upcast) == ("tf_band" if window else "tf_blockwise", False)
    options = {} if window is None else {"sliding_window": window}

    def built(make, policy):
        layer = make(impls.HEAD_DIM, impls.QUERY_HEADS, impls.KV_HEADS, dtype=policy, **options)
        layer.build((1, 4, impls.D_MODEL), (1, 4, impls.D_MODEL))
        layer.set_weights(impls.gqa_weights())
        return layer

    half = {"pygqa": built(pygqa.GroupQueryAttention, "mixed_bfloat16"),
            "keras_gqa": built(keras.layers.GroupQueryAttention, "mixed_bfloat16")}
    exact = built(pygqa.GroupQueryAttention, "float32")  # the gradients' reference
    rng = np.random.default_rng(5)
    # 2 x 256 with 8 query heads: several blocks and causal buckets.
    x = rng.standard_normal((2, 256, impls.D_MODEL)).astype("float32")
    if window is None:
        expected = reference.gqa_forward(impls.gqa_weights(), x, causal=True)
    else:  # the float32 layer on its explicit path: float32 rounding, ~1e-6
        exact.flash_attention = False
        expected = np.asarray(to_numpy(exact(x, x, use_causal_mask=True)), np.float64)
        exact.flash_attention = None

    def output(layer):
        out = layer(x, x, use_causal_mask=True)
        return np.asarray(to_numpy(ops.cast(out, "float32")), np.float64)

    def relative(got, want):
        # Root-mean-square, not the largest: the largest error of both layers is the
        # final rounding to bfloat16 of one element, the same in both.
        return np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2))

    errors = {name: relative(output(layer), expected) for name, layer in half.items()}
    assert 1e-4 < errors["pygqa"] <= 1.25 * errors["keras_gqa"], errors
    cotangent = rng.standard_normal(x.shape).astype("float32")

    def input_gradient(layer):
        def call(x):
            return ops.cast(layer(x, x, use_causal_mask=True), "float32")

        (gradient,) = vjp(call, (x,), cotangent)
        return np.asarray(gradient, np.float64)

    exact_gradient = input_gradient(exact)
    for name, layer in half.items():  # through the query, the key and the value
        errors[f"{name} gradient"] = relative(input_gradient(layer), exact_gradient)
    assert 1e-4 < errors["pygqa gradient"] <= 1.25 * errors["keras_gqa gradient"], errors
