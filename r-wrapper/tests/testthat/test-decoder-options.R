# The options of decoder language models from R: rotary positions, query/key
# norms, soft cap, logit scale; positions as R integers, matrices and doubles.

# Half-split rotation in plain R: features i and i + h/2 of a head turn
# together by position * wavelength^(-2(i - 1)/h).
rotate_in_r <- function(heads, positions, wavelength) {
  h <- dim(heads)[4]
  half <- h / 2
  theta <- wavelength^(-2 * (seq_len(half) - 1) / h)
  out <- heads
  for (b in seq_len(dim(heads)[1])) for (t in seq_len(dim(heads)[2])) {
    angle <- positions[b, t] * theta
    first <- heads[b, t, , seq_len(half), drop = FALSE]
    second <- heads[b, t, , half + seq_len(half), drop = FALSE]
    for (n in seq_len(dim(heads)[3])) {
      out[b, t, n, seq_len(half)] <- first[1, 1, n, ] * cos(angle) - second[1, 1, n, ] * sin(angle)
      out[b, t, n, half + seq_len(half)] <- second[1, 1, n, ] * cos(angle) +
        first[1, 1, n, ] * sin(angle)
    }
  }
  out
}

test_that("rotary positions from an R matrix match a plain R rotation of the query", {
  skip_if_no_pygqa()
  gqa <- new_gqa(use_bias = FALSE, rope_max_wavelength = 100)
  x <- random_array(2, 5, 8)
  positions <- rbind(0:4, c(0L, 0L, 0L, 1L, 2L))  # row 2 left-padded by 2
  out <- as.array(gqa(x, use_causal_mask = TRUE, positions = positions))
  expect_equal(dim(out), c(2, 5, 8))
  # The rotation itself, on the projected query heads.
  np <- reticulate::import("numpy", convert = FALSE)
  py_gqa <- reticulate::r_to_py(gqa)
  heads <- reticulate::py_to_r(keras$ops$convert_to_numpy(
    py_gqa$`_query_dense`(np$asarray(x, dtype = "float32"))))
  turned <- reticulate::import("pygqa.rotary")$rotate(
    np$asarray(heads, dtype = "float32"), np$asarray(positions, dtype = "int32"), 100)
  expect_equal(as.array(turned), rotate_in_r(heads, positions, 100), tolerance = tol_reference)
  # Positions as whole doubles and as an integer vector give the same numbers.
  doubles <- as.array(gqa(x, use_causal_mask = TRUE, positions = positions + 0))
  expect_equal(doubles, out, tolerance = 0)
  vector <- as.array(gqa(x, use_causal_mask = TRUE, positions = 0:4))
  expect_equal(vector, as.array(gqa(x, use_causal_mask = TRUE)), tolerance = 0)
})

test_that("decoding with rotation and norms equals one causal call", {
  skip_if_no_pygqa()
  gqa <- new_gqa(rope_max_wavelength = 100, use_query_key_norm = TRUE, logit_soft_cap = 2,
                 attention_scale = 0.4)
  x <- random_array(2, 6, 8)
  whole <- as.array(gqa(x, use_causal_mask = TRUE))
  cache <- gqa$empty_cache(2, 6)
  steps <- array(0, dim(whole))
  for (i in seq_len(6)) {
    res <- gqa(x[, i, , drop = FALSE], cache = cache, cache_update_index = i - 1,
               use_causal_mask = TRUE)
    cache <- res$cache
    steps[, i, ] <- as.array(res$attention_output)
  }
  expect_equal(steps, whole, tolerance = 1e-5)
  paths <- vapply(gqa$weights, function(w) w$path, character(1))
  expect_equal(sub("^[^/]*/", "", utils::tail(paths, 2)), c("query_norm/scale", "key_norm/scale"))
  expect_equal(gqa$get_config()$logit_soft_cap, 2)
})

test_that("bad decoder options and positions are errors that name the argument", {
  skip_if_no_pygqa()
  expect_error(new_gqa(head_dim = 3, rope_max_wavelength = 100)(random_array(1, 2, 8)),
               "`head_dim`: expected an even number", class = "pygqa_error")
  expect_error(new_gqa(logit_soft_cap = 0), "`logit_soft_cap`", class = "pygqa_error")
  expect_error(new_gqa(rope_max_wavelength = 100, layer_norm_epsilon = -1),
               "`layer_norm_epsilon`", class = "pygqa_error")
  gqa <- new_gqa(rope_max_wavelength = 100)
  x <- random_array(1, 3, 8)
  expect_error(gqa(x, positions = c(0, 0.5, 1)), "`positions`: expected whole numbers",
               class = "pygqa_argument_error")
  expect_error(gqa(x, positions = c(0L, NA, 1L)), "`positions`", class = "pygqa_argument_error")
  expect_error(gqa(x, positions = 0:3), "`positions`: expected shape", class = "pygqa_error")
})
