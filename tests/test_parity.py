"""Same weights, same numbers: pygqa against keras.layers.GroupQueryAttention and numpy."""

import numpy as np
import pytest
from helpers import (
    ATOL,
    LAYOUTS,
    RTOL,
    explicit_mask,
    inputs,
    pygqa_and_keras,
    random_masks,
    to_numpy,
)
from reference import gqa_reference

SHAPES = {
    "self-7": dict(target=7),
    "cross-7x97": dict(target=7, source=97),
    "cross-97x5": dict(target=97, source=5),
    "dims-16x24x12": dict(target=9, source=11, query_dim=16, value_dim=24, key_dim=12),
    "batch1": dict(batch=1, target=13),
}
MASKS = ["none", "query", "value", "key", "attention", "all", "causal", "all+causal"]


def _masks_for(kind, rng, batch, target, source):
    if kind == "none" or kind == "causal":
        return {}
    masks = random_masks(rng, batch, target, source)
    if kind == "all" or kind == "all+causal":
        return masks
    return {f"{kind}_mask": masks[f"{kind}_mask"]}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_matches_keras_and_numpy(layout, use_bias, shape, scores, rng):
    num_query_heads, num_key_value_heads = LAYOUTS[layout]
    q, v, k = inputs(rng, **SHAPES[shape])
    ours, theirs, weights = pygqa_and_keras(q, v, k, 8, num_query_heads, num_key_value_heads,
                                            rng, use_bias=use_bias)
    batch, target, source = q.shape[0], q.shape[1], v.shape[1]
    for kind in MASKS:
        masks = _masks_for(kind, rng, batch, target, source)
        causal = kind.endswith("causal")
        kwargs = dict(masks, use_causal_mask=causal, return_attention_scores=scores)
        got = ours(q, v, k, **kwargs)
        expected = theirs(q, v, k, **kwargs)
        keep = explicit_mask(batch, target, source, **masks)
        if causal:
            keep &= np.tril(np.ones((target, source), dtype=bool))
        ref_out, ref_probs = gqa_reference(weights, q, v, k, mask=keep, use_bias=use_bias)
        # Keras's own paths disagree on rows with no key left; compare the rest.
        rows = keep.any(axis=-1)
        if scores:
            (got, got_scores), (expected, expected_scores) = got, expected
            got_scores = to_numpy(got_scores)
            np.testing.assert_allclose(got_scores, ref_probs, atol=ATOL, rtol=RTOL)
            by_row = [np.moveaxis(to_numpy(x), 1, 2)[rows] for x in (got_scores, expected_scores)]
            np.testing.assert_allclose(*by_row, atol=ATOL, rtol=RTOL)
        got, expected = to_numpy(got), to_numpy(expected)
        np.testing.assert_allclose(got[rows], expected[rows], atol=ATOL, rtol=RTOL,
                                   err_msg=f"masks={kind}")
        np.testing.assert_allclose(got, ref_out, atol=ATOL, rtol=RTOL, err_msg=f"masks={kind}")


@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["nodropout", "dropout-inference"])
def test_rows_without_keys_give_the_output_bias(scores, dropout, rng):
    q, v, k = inputs(rng, batch=2, target=5, source=6)
    import pygqa

    layer = pygqa.GroupQueryAttention(4, 4, 2, dropout=dropout)
    layer(q, v, k)
    bias = layer.get_weights()[-1] + 0.5
    layer.set_weights(layer.get_weights()[:-1] + [bias])
    attention_mask = np.ones((2, 5, 6), dtype=bool)
    attention_mask[0, 2] = False
    attention_mask[1] = False
    result = layer(q, v, k, attention_mask=attention_mask, return_attention_scores=scores)
    out = to_numpy(result[0] if scores else result)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[0, 2], bias, atol=ATOL)
    np.testing.assert_allclose(out[1], np.broadcast_to(bias, (5, bias.size)), atol=ATOL)
    if scores:
        probs = to_numpy(result[1])
        assert (probs[0, :, 2] == 0).all() and (probs[1] == 0).all()
        np.testing.assert_allclose(probs[0, :, [0, 1, 3, 4]].sum(-1), 1.0, atol=ATOL)


def test_fused_and_scores_paths_agree_everywhere(rng):
    import pygqa

    q, v, k = inputs(rng, batch=3, target=11, source=10)
    layer = pygqa.GroupQueryAttention(8, 8, 2)
    masks = random_masks(rng, 3, 11, 10, p=0.4)
    fused = to_numpy(layer(q, v, k, **masks))
    with_scores, _ = layer(q, v, k, **masks, return_attention_scores=True)
    np.testing.assert_allclose(fused, to_numpy(with_scores), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("scores", [False, True], ids=["fused", "scores"])
def test_a_single_key_gets_probability_one_quietly(scores, rng):
    import warnings

    import pygqa

    q, v, k = inputs(rng, target=5, source=1)
    layer = pygqa.GroupQueryAttention(4, 4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = layer(q, v, k, return_attention_scores=scores)
    ref_out, _ = gqa_reference(layer.get_weights(), q, v, k)
    out = result[0] if scores else result
    np.testing.assert_allclose(to_numpy(out), ref_out, atol=ATOL, rtol=RTOL)
    if scores:
        np.testing.assert_array_equal(to_numpy(result[1]), 1.0)
