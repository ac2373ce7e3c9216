"""The decoder options from R: the same numbers and the same errors as in Python.

Rotary positions (an R integer matrix per row, R doubles per decoding step),
query/key norms, the soft cap and the logit scale pass through `...`; weights
cross from Python to R.
"""

import re

import numpy as np
import pytest
from keras import ops
from xlang import ATOL, max_abs_diff, record

import pygqa

ROTARY_IN_R = """
rotary_in_r <- function(layer_args, weights, x, positions) {
  gqa <- do.call(pygqa::layer_group_query_attention, layer_args)
  gqa(x)
  gqa$set_weights(weights)
  whole <- as.array(gqa(x, use_causal_mask = TRUE, positions = positions))
  cache <- gqa$empty_cache(dim(x)[1], dim(x)[2])
  res <- gqa(x[, 1:3, , drop = FALSE], cache = cache, cache_update_index = 0,
             use_causal_mask = TRUE)
  steps <- array(0, dim(x)[c(1, 2)])
  out <- array(0, c(dim(x)[1], dim(x)[2], dim(x)[3]))
  out[, 1:3, ] <- as.array(res$attention_output)
  for (i in 4:dim(x)[2]) {
    # A decoding step's position as an R double: i - 1, counted from 0 as in Python.
    res <- gqa(x[, i, , drop = FALSE], cache = res$cache, cache_update_index = i - 1,
               use_causal_mask = TRUE, positions = i - 1)
    out[, i, ] <- as.array(res$attention_output)
  }
  list(whole = whole, steps = out,
       names = vapply(gqa$weights, function(w) w$path, character(1)))
}
rotary_error_in_r <- function(layer_args, x, positions) {
  tryCatch({
    gqa <- do.call(pygqa::layer_group_query_attention, layer_args)
    gqa(x, positions = positions)
    "no error"
  }, pygqa_error = conditionMessage)
}
"""

OPTIONS = dict(head_dim=4, num_query_heads=4, num_key_value_heads=2, use_bias=False,
               rope_max_wavelength=100.0, rope_scaling_factor=2.0, use_query_key_norm=True,
               layer_norm_epsilon=1e-5, logit_soft_cap=1.5, attention_scale=0.4)


@pytest.fixture
def session(r):
    r.raw(ROTARY_IN_R)
    return r


def test_r_rotary_layer_equals_python(session):
    rng = np.random.default_rng(21)
    x = rng.uniform(-1, 1, size=(2, 6, 12)).astype("float32")
    positions = np.array([[0, 1, 2, 3, 4, 5], [0, 0, 0, 1, 2, 3]], "int32")
    layer = pygqa.GroupQueryAttention(**OPTIONS)
    layer(x)
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32") + 1.0 * (w.ndim == 1)
               for w in layer.get_weights()]
    layer.set_weights(weights)
    whole = ops.convert_to_numpy(layer(x, use_causal_mask=True, positions=positions))
    causal = ops.convert_to_numpy(layer(x, use_causal_mask=True))

    from_r = session.fn("rotary_in_r")(OPTIONS, weights, x, positions)
    assert record(max_abs_diff(from_r["whole"], whole), "rotary positions") <= ATOL
    # R's decoding (per-step positions as R doubles) equals Python's one causal call.
    assert record(max_abs_diff(from_r["steps"], causal), "rotary decoding") <= 2e-6
    assert [p.split("/", 1)[1] for p in from_r["names"]][-2:] == [
        "query_norm/scale", "key_norm/scale"]


@pytest.mark.parametrize("layer_args, positions, words", [
    (dict(OPTIONS, head_dim=3), None, "`head_dim`: expected an even number"),
    (dict(OPTIONS, rope_max_wavelength=-1.0), None, "`rope_max_wavelength`"),
    (dict(OPTIONS, logit_soft_cap=0.0), None, "`logit_soft_cap`"),
    (dict(OPTIONS, layer_norm_epsilon=0.0), None, "`layer_norm_epsilon`"),
    (OPTIONS, np.array([0.5, 1, 2, 3, 4, 5]), "`positions`: expected whole numbers"),
    (OPTIONS, np.arange(4, dtype="int32"), r"`positions`: expected shape \(T,\)"),
], ids=["odd-head-dim", "wavelength", "soft-cap", "epsilon", "fractional-positions",
        "positions-shape"])
def test_r_errors_name_the_argument(session, layer_args, positions, words):
    x = np.zeros((2, 6, 12), "float32")
    message = session.fn("rotary_error_in_r")(layer_args, x, positions)
    message = message if isinstance(message, str) else message[0]
    assert re.search(words, message), message
