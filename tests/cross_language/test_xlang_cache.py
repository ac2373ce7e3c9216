"""Decoding with a key/value cache: R and Python produce the same outputs and cache."""

import numpy as np
import pytest
from keras import ops
from xlang import ATOL, max_abs_diff, record

import pygqa

DECODE_IN_R = """
decode_in_r <- function(layer_args, weights, x, max_length, prefill) {
  gqa <- do.call(pygqa::layer_group_query_attention, layer_args)
  gqa(x[, 1, , drop = FALSE])
  gqa$set_weights(weights)
  cache <- gqa$empty_cache(dim(x)[1], max_length)
  res <- gqa(x[, seq_len(prefill), , drop = FALSE], cache = cache, cache_update_index = 0,
             use_causal_mask = TRUE)
  outputs <- list(as.array(res$attention_output))
  for (i in seq_len(dim(x)[2] - prefill) + prefill) {
    res <- gqa(x[, i, , drop = FALSE], cache = res$cache, cache_update_index = i - 1,
               use_causal_mask = TRUE)
    outputs[[length(outputs) + 1L]] <- as.array(res$attention_output)
  }
  list(output = do.call(abind_positions, outputs), cache = as.array(res$cache))
}
abind_positions <- function(...) {
  parts <- list(...)
  out <- array(0, c(dim(parts[[1]])[1], sum(vapply(parts, function(p) dim(p)[2], 1)),
                    dim(parts[[1]])[3]))
  at <- 0
  for (p in parts) {
    out[, at + seq_len(dim(p)[2]), ] <- p
    at <- at + dim(p)[2]
  }
  out
}
"""


@pytest.mark.parametrize("layout", [(4, 4), (8, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_r_decoding_equals_python_decoding(r, layout):
    rng = np.random.default_rng(11)
    num_query_heads, num_key_value_heads = layout
    x = rng.uniform(-1, 1, size=(2, 7, 12)).astype("float32")
    layer = pygqa.GroupQueryAttention(4, num_query_heads, num_key_value_heads)
    layer(x)
    weights = [rng.normal(scale=0.3, size=w.shape).astype("float32")
               for w in layer.get_weights()]
    layer.set_weights(weights)
    cache = layer.empty_cache(2, 9)
    output, cache = layer(x[:, :3], cache=cache, cache_update_index=0, use_causal_mask=True)
    outputs = [ops.convert_to_numpy(output)]
    for i in range(3, 7):
        output, cache = layer(x[:, i : i + 1], cache=cache, cache_update_index=i,
                              use_causal_mask=True)
        outputs.append(ops.convert_to_numpy(output))
    python = np.concatenate(outputs, axis=1)

    r.raw(DECODE_IN_R)
    layer_args = dict(head_dim=4, num_query_heads=num_query_heads,
                      num_key_value_heads=num_key_value_heads)
    from_r = r.fn("decode_in_r")(layer_args, weights, x, 9, 3)
    assert record(max_abs_diff(from_r["output"], python), "cache decoding") <= ATOL
    assert max_abs_diff(from_r["cache"], ops.convert_to_numpy(cache)) <= ATOL
    np.testing.assert_allclose(python, ops.convert_to_numpy(layer(x, use_causal_mask=True)),
                               atol=2e-6)
