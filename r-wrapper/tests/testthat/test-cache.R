# Decoding with a key/value cache from R: the same numbers as one causal call,
# and as the plain R reference.

test_that("decoding one position at a time equals one causal call", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
  x <- random_array(2, 6, 8)
  whole <- as.array(gqa(x, use_causal_mask = TRUE))
  cache <- gqa$empty_cache(2, 8)
  steps <- array(0, dim(whole))
  for (i in seq_len(6)) {
    res <- gqa(x[, i, , drop = FALSE], cache = cache, cache_update_index = i - 1,
               use_causal_mask = TRUE)
    expect_named(res, c("attention_output", "cache"))
    cache <- res$cache
    steps[, i, ] <- as.array(res$attention_output)
  }
  expect_equal(steps, whole, tolerance = tol_same_precision)
  ref <- reference_gqa(gqa$get_weights(), x, allowed = causal(2, 6, 6))
  expect_equal(steps, ref$attention_output, tolerance = tol_reference)
  # Keys and values at key/value-head width; the two unused positions stay zero.
  expect_equal(dim(as.array(cache)), c(2, 2, 8, 2, 4))
  expect_true(all(as.array(cache)[, , 7:8, , ] == 0))
})

test_that("a prefill call returns output, scores and cache in that order", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 4, num_query_heads = 4, num_key_value_heads = 1)
  x <- random_array(1, 3, 8)
  res <- gqa(x, cache = gqa$empty_cache(1, 5), cache_update_index = 0L,
             use_causal_mask = TRUE, return_attention_scores = TRUE)
  expect_named(res, c("attention_output", "attention_scores", "cache"))
  expect_equal(dim(as.array(res$attention_scores)), c(1, 4, 3, 5))
  expect_equal(dim(as.array(res$cache)), c(1, 2, 5, 1, 4))
})

test_that("cache_update_index must be a whole number of positions", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  x <- random_array(1, 2, 8)
  cache <- gqa$empty_cache(1, 4)
  err <- expect_error(gqa(x, cache = cache, cache_update_index = 1.5), class = "pygqa_error")
  expect_match(conditionMessage(err), "`cache_update_index`.*cache_update_index=1.5")
  err <- expect_error(gqa(x, cache = cache, cache_update_index = 3), class = "pygqa_error")
  expect_match(conditionMessage(err), "max_length 4", fixed = TRUE)
})
