"""Composition parity: every `object` form gives the same result in R and Python.

The layer is created and, for most forms, called at once, so weights cannot be
handed over in between: both languages pass the same `seed=` (pygqa seeds the
initial weights with it, a different seed per projection) and a random-normal
bias initializer, so equal seeds mean equal, non-trivial weights.
"""

import keras
import numpy as np
import pytest
from xlang import ATOL, max_abs_diff, record

import pygqa

B, T, S, M, MV, MK = 2, 5, 7, 8, 6, 4
LAYER_ARGS = dict(head_dim=4, num_query_heads=4, num_key_value_heads=2, seed=5,
                  bias_initializer="random_normal")


def _data():
    rng = np.random.default_rng(99)
    unit = lambda *shape: rng.uniform(-1, 1, size=shape).astype(np.float32)  # noqa: E731
    q, v, k = unit(B, T, M), unit(B, S, MV), unit(B, S, MK)
    mask = rng.random((B, T, S)) < 0.7
    return q, v, k, mask


def _python(form, q, v, k, mask):
    make = lambda obj: pygqa.layer_group_query_attention(obj, **LAYER_ARGS)  # noqa: E731
    np_ = keras.ops.convert_to_numpy
    if form in ("missing", "null"):
        layer = pygqa.layer_group_query_attention(**LAYER_ARGS) if form == "missing" else make(None)
        return {"output": np_(layer(q, v)), "weights": layer.get_weights()}
    if form == "sequential":
        model = keras.Sequential([keras.Input((T, M))])
        assert make(model) is model
        return {"output": np_(model(q)), "weights": model.layers[0].get_weights()}
    if form == "tensor":
        return {"output": np_(make(keras.ops.convert_to_tensor(q)))}
    if form in ("r_array", "numpy"):  # R's array and NumPy's array are both "an array"
        return {"output": np_(make(q))}
    if form == "keras_input":
        inputs = keras.Input((T, M))
        return {"output": np_(keras.Model(inputs, make(inputs))(q))}
    if form in ("list2", "python_list"):
        return {"output": np_(make([q, v]))}
    if form == "list3":
        return {"output": np_(make((q, v, k)))}
    if form == "named_list":  # R's named list is Python's dict
        out, scores = make(dict(query=q, value=v, key=k, attention_mask=mask,
                                use_causal_mask=True, return_attention_scores=True))
        return {"output": np_(out), "scores": np_(scores)}
    raise AssertionError(form)


FORMS = ["missing", "null", "sequential", "tensor", "r_array", "numpy", "keras_input",
         "list2", "list3", "named_list", "python_list"]


@pytest.mark.parametrize("form", FORMS)
def test_object_form_gives_the_same_result(r, form):
    q, v, k, mask = _data()
    r_args = {name: (float(value) if isinstance(value, int) else value)
              for name, value in LAYER_ARGS.items()}
    from_r = r.fn("compose_form")(form, q, v, k, mask, r_args)
    from_py = _python(form, q, v, k, mask)
    assert from_r["output"].shape == from_py["output"].shape == (B, T, M)
    assert record(max_abs_diff(from_r["output"], from_py["output"]), f"compose {form}") <= ATOL
    if "scores" in from_py:
        assert from_r["scores"].shape == (B, 4, T, S)
        assert max_abs_diff(from_r["scores"], from_py["scores"]) <= ATOL
    if "weights" in from_py:
        for a, b in zip(from_r["weights"], from_py["weights"], strict=True):
            np.testing.assert_array_equal(np.asarray(a, np.float32), b)
