"""The fast path's hand-written backward pass against autodiff and against Keras."""

import keras
import numpy as np
import pytest
from gradients import loss_gradients, vjp
from helpers import random_weights, to_numpy

import pygqa

# Relative to the largest gradient entry: some gradients are analytically zero
# (softmax ignores the key bias) and are float32 cancellation noise of large terms.
GRAD_RTOL = 1e-5


def _close(got, expected):
    scale = max(float(np.abs(e).max()) for e in expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=GRAD_RTOL * scale, rtol=0)


@pytest.fixture
def setup():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 37, 24)).astype("float32")
    mask = rng.random((2, 37, 37)) < 0.6
    mask[0, 3] = False  # a row with no key
    layer = pygqa.GroupQueryAttention(8, 8, 2)
    layer(x)
    random_weights(layer, rng)
    return layer, x, mask


def _layer_layouts():
    return ["default", "key-major"] if keras.backend.backend() == "tensorflow" else ["default"]


@pytest.fixture(params=_layer_layouts())
def block_layout(request, monkeypatch):
    """The layer as it runs, and on TensorFlow also with every call on the
    key-major products in several 16-row blocks (they run from 2048 keys on)."""
    if request.param == "key-major":
        from pygqa.kernels import tf_blockwise

        monkeypatch.setattr(tf_blockwise, "KEY_MAJOR_MIN_KEYS", 1)
        monkeypatch.setattr(tf_blockwise, "uses_onednn", lambda: False)  # Eigen's layout
        monkeypatch.setattr(tf_blockwise, "_BLOCK_ELEMENTS", 1)
    return request.param


@pytest.mark.parametrize("masks", ["none", "causal", "mask", "mask+causal"])
def test_fast_path_gradients_equal_autodiff_of_the_scores_path(setup, masks, block_layout):
    layer, x, mask = setup
    kwargs = dict(use_causal_mask="causal" in masks)
    if masks.startswith("mask"):
        kwargs["attention_mask"] = mask
    fast = loss_gradients(layer, x, **kwargs)
    explicit = loss_gradients(layer, x, return_attention_scores=True, **kwargs)
    _close(fast, explicit)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients_equal_keras(setup, causal, block_layout):
    layer, x, _ = setup
    theirs = keras.layers.GroupQueryAttention(8, 8, 2)
    theirs(x, x)
    theirs.set_weights(layer.get_weights())
    # Keras needs `value`; pygqa's self-attention call is the same function.
    ours = loss_gradients(layer, x, use_causal_mask=causal)
    wrapped = _SelfAttention(theirs)
    wrapped(x)
    _close(ours, loss_gradients(wrapped, x, use_causal_mask=causal))


class _SelfAttention(keras.layers.Layer):
    """keras.layers.GroupQueryAttention called as layer(x, x)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def call(self, x, use_causal_mask=False):
        return self.inner(x, x, use_causal_mask=use_causal_mask)


def _python_scan(step, init, inputs):
    """A plain loop with the scan contract, for backends without a blockwise kernel."""
    carry, outputs = init, []
    for i in range(inputs[0].shape[0]):
        carry, out = step(carry, [x[i] for x in inputs])
        outputs.append(out)
    if isinstance(outputs[0], tuple):
        return carry, tuple(keras.ops.stack(o) for o in zip(*outputs))
    return carry, keras.ops.stack(outputs)


def _backend_scan():
    backend = keras.backend.backend()
    if backend == "jax":
        from pygqa.kernels import jax_blockwise

        return jax_blockwise._scan
    if backend == "tensorflow":
        from pygqa.kernels import tf_blockwise

        return tf_blockwise._scan
    return _python_scan


# Block plans with several blocks at test sizes: 16-row blocks, and a budget
# for kept probabilities of none, about one and a half blocks (a bucket split
# into kept and recomputed blocks), or everything.
KEEP_BUDGETS = {"none": 0, "some": 14_000, "all": 1 << 27}


def _block_products():
    """The blocks' product layouts this backend runs: TensorFlow has a second one."""
    from pygqa.kernels import blockwise

    products = {"query-major": blockwise.QUERY_MAJOR}
    if keras.backend.backend() == "tensorflow":
        from pygqa.kernels import tf_blockwise

        products["key-major"] = tf_blockwise.KEY_MAJOR
    return products


@pytest.mark.parametrize("layout_name", list(_block_products()))
@pytest.mark.parametrize("kept", KEEP_BUDGETS)
@pytest.mark.parametrize("masks", ["none", "causal", "mask+causal"])
def test_blockwise_kernel_over_several_blocks_equals_autodiff(masks, kept, layout_name,
                                                             monkeypatch):
    from pygqa.kernels import blockwise, explicit
    from pygqa.kernels.numerics import with_causal

    products = _block_products()[layout_name]

    monkeypatch.setattr(blockwise, "_BLOCK_ELEMENTS", 1)  # 16 rows per block
    monkeypatch.setattr(blockwise, "KEEP_ELEMENTS", KEEP_BUDGETS[kept])
    rng = np.random.default_rng(9)
    batch, target, source, heads, kv_heads, head_dim = 2, 37, 41, 8, 2, 4
    query = rng.normal(size=(batch, target, heads, head_dim)).astype("float32")
    key = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    value = rng.normal(size=(batch, source, kv_heads, head_dim)).astype("float32")
    d_out = rng.normal(size=query.shape).astype("float32")
    causal = "causal" in masks
    mask = None
    if masks.startswith("mask"):
        mask = rng.random((batch, target, source)) < 0.6
        mask[..., 0] = True  # the kernel's contract: every row keeps a key
    plan = blockwise.plan_blocks(batch, target, source, heads, causal)
    assert plan.num_blocks == 3
    kept_flags = [bucket[3] for bucket in plan.buckets]
    assert kept == ("all" if all(kept_flags) else "some" if any(kept_flags) else "none")

    full_mask = None if mask is None else keras.ops.convert_to_tensor(mask)
    if causal:
        full_mask = with_causal(full_mask, target, source)

    def explicit_path(q, k, v):
        probs = explicit.probabilities(q, k, full_mask)
        return explicit.weighted_values(probs, v)

    tensors = [keras.ops.convert_to_tensor(x) for x in (query, key, value)]
    expected_out = to_numpy(explicit_path(*tensors))
    expected_grads = vjp(explicit_path, (query, key, value), d_out)

    block_mask = None if mask is None else keras.ops.convert_to_tensor(mask)
    # JAX unrolls short block loops: check the 3 blocks both unrolled and as a loop.
    for unroll_limit in (0, 4) if keras.backend.backend() == "jax" else (None,):
        if unroll_limit is not None:
            from pygqa.kernels import jax_blockwise

            monkeypatch.setattr(jax_blockwise, "_UNROLL_BLOCKS", unroll_limit)
        layout = blockwise.Layout(*tensors, block_mask, causal, plan, _backend_scan(), products)
        out_blocks, kept_probs = blockwise.forward(layout, keep=True)
        assert [probs is not None for probs in kept_probs] == kept_flags
        out = layout.from_blocks(out_blocks)
        grads = blockwise.backward(layout, out_blocks, keras.ops.convert_to_tensor(d_out),
                                    kept_probs)
        np.testing.assert_allclose(to_numpy(out), expected_out, atol=2e-6, rtol=1e-5)
        _close([to_numpy(g) for g in grads], expected_grads)


def test_tensorflow_takes_key_major_products_from_2048_keys_with_eigen(monkeypatch):
    from pygqa.kernels import blockwise, tf_blockwise

    monkeypatch.setattr(tf_blockwise, "uses_onednn", lambda: True)
    assert tf_blockwise.choose_products(8192, 4) == (blockwise.QUERY_MAJOR, None)
    monkeypatch.setattr(tf_blockwise, "uses_onednn", lambda: False)
    assert tf_blockwise.choose_products(2048, 4) == (tf_blockwise.KEY_MAJOR, 64)
    assert tf_blockwise.choose_products(8192, 1) == (tf_blockwise.KEY_MAJOR, 256)
    assert tf_blockwise.choose_products(2047, 4) == (blockwise.QUERY_MAJOR, None)
    assert tf_blockwise.choose_products(None, 4) == (blockwise.QUERY_MAJOR, None)
    # max_rows caps a block below what the cache-sized target would give.
    assert blockwise.plan_blocks(1, 2048, 2048, 8, False, 1 << 21, 64).rows == 64


def test_block_plan_never_pads_a_short_query():
    # A decoding step has one query row: rounding it up to a 16-row block made
    # every step compute 15 wasted rows.
    from pygqa.kernels import blockwise

    for target in (1, 3, 15):
        for causal in (False, True):
            plan = blockwise.plan_blocks(4, target, 4096, 8, causal)
            assert (plan.rows, plan.num_blocks) == (target, 1)
    long_plan = blockwise.plan_blocks(1, 4096, 4096, 8, False)
    assert long_plan.rows % 16 == 0 and long_plan.rows * long_plan.num_blocks >= 4096


def test_jax_keeps_no_probabilities_on_cpu_and_the_budget_on_a_gpu(monkeypatch):
    # Recomputing beat keeping on XLA:CPU (fresh pages for the kept blocks on every
    # call); a GPU's allocator reuses its memory, so the budget stays there.
    import jax

    from pygqa.kernels import blockwise, jax_blockwise

    assert jax.default_backend() == "cpu"
    assert jax_blockwise.keep_elements() == 0
    plan = blockwise.plan_blocks(1, 2048, 2048, 8, False,
                                 keep_elements=jax_blockwise.keep_elements())
    assert not any(bucket[3] for bucket in plan.buckets)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert jax_blockwise.keep_elements() == blockwise.KEEP_ELEMENTS
    assert all(bucket[3] for bucket in blockwise.plan_blocks(
        1, 2048, 2048, 8, False, keep_elements=jax_blockwise.keep_elements()).buckets)
