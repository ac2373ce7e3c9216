# Conversions from R: a multi-head checkpoint to grouped query attention (the
# paper's mean-pooling), Keras's layer to and from this package's, and the
# layouts for several devices. Oracles: Keras's MultiHeadAttention and
# GroupQueryAttention with the same weights, and the pooling written in R.

# A built MultiHeadAttention with R-made random weights.
new_mha <- function(num_heads, key_dim, q, v, ...) {
  mha <- keras$layers$MultiHeadAttention(num_heads = as.integer(num_heads),
                                         key_dim = as.integer(key_dim), ...)
  mha(q, v)
  mha$set_weights(lapply(mha$get_weights(), function(w) {
    d <- dim(w) %||% length(w)
    array(stats::rnorm(prod(d), sd = 0.3), dim = d)
  }))
  mha
}

# Mean over neighbouring heads: heads on dimension 2 of a kernel (m, u, h),
# dimension 1 of a bias (u, h).
pool_groups <- function(w, groups) {
  kernel <- length(dim(w)) == 3L
  heads <- if (kernel) dim(w)[2] else dim(w)[1]
  size <- heads %/% groups
  parts <- lapply(seq_len(groups), function(j) {
    idx <- (j - 1L) * size + seq_len(size)
    if (kernel) apply(w[, idx, , drop = FALSE], c(1, 3), mean) else
      colMeans(w[idx, , drop = FALSE])
  })
  if (kernel) aperm(simplify2array(parts), c(1, 3, 2)) else t(simplify2array(parts))
}

weights_r <- function(layer) lapply(layer$get_weights(), as.array)

test_that("as many key/value heads as heads gives the MHA outputs and weights", {
  skip_if_no_pygqa()
  set.seed(1)
  q <- random_array(2, 7, 8)
  v <- random_array(2, 5, 6)
  mha <- new_mha(4, 3, q, v)
  gqa <- from_multi_head_attention(mha, 4)
  expect_s3_class(gqa, "pygqa_layer")
  expect_identical(weights_r(gqa), weights_r(mha))
  out <- as.array(gqa(q, v, use_causal_mask = TRUE))
  expect_equal(out, as.array(mha(q, v, use_causal_mask = TRUE)), tolerance = tol_same_precision)
})

test_that("fewer key/value heads: the R mean of each group, and GQA with those weights", {
  skip_if_no_pygqa()
  set.seed(2)
  q <- random_array(2, 6, 8)
  v <- random_array(2, 9, 8)
  mha <- new_mha(6, 2, q, v)
  gqa <- from_multi_head_attention(mha, num_key_value_heads = 3)  # an R double
  expect_identical(gqa$num_key_value_heads, 3L)
  source <- weights_r(mha)
  expected <- c(source[1:2], lapply(source[3:6], pool_groups, groups = 3L), source[7:8])
  got <- weights_r(gqa)
  for (i in seq_along(expected)) {
    expect_equal(got[[i]], expected[[i]], tolerance = tol_same_precision, ignore_attr = TRUE)
  }
  expect_equal(as.array(gqa(q, v)), reference_gqa(got, q, v)$attention_output,
               tolerance = tol_reference)
})

test_that("a grouped layer pools or repeats its key/value heads", {
  skip_if_no_pygqa()
  set.seed(3)
  x <- random_array(2, 5, 8)
  source <- new_gqa(head_dim = 2, num_query_heads = 4, num_key_value_heads = 2)
  out <- as.array(source(x))
  repeated <- from_multi_head_attention(source, 4, name = "repeated")
  expect_identical(repeated$name, "repeated")
  expect_equal(as.array(repeated(x)), out, tolerance = tol_same_precision)
  mqa <- from_multi_head_attention(reticulate::r_to_py(source), 1)
  w <- weights_r(source)
  expect_equal(weights_r(mqa)[[3]], pool_groups(w[[3]], 1L), tolerance = tol_same_precision,
               ignore_attr = TRUE)
})

test_that("to_keras() and from_keras() are exact and keep the name", {
  skip_if_no_pygqa()
  set.seed(4)
  q <- random_array(2, 7, 8)
  v <- random_array(2, 5, 6)
  ours <- new_gqa(head_dim = 3, num_query_heads = 6, num_key_value_heads = 2, name = "mine")
  out <- as.array(ours(q, v))
  theirs <- to_keras(ours)
  expect_true(inherits(theirs, "keras.src.layers.attention.grouped_query_attention.GroupedQueryAttention"))
  expect_identical(theirs$name, "mine")
  expect_identical(weights_r(theirs), weights_r(ours))
  expect_equal(as.array(theirs(q, v)), out, tolerance = tol_same_precision)
  back <- from_keras(theirs, name = "back", seed = 7)
  expect_s3_class(back, "pygqa_layer")
  expect_identical(list(back$name, back$seed), list("back", 7L))
  expect_identical(weights_r(back), weights_r(ours))
  expect_equal(as.array(back(q, v)), out, tolerance = tol_same_precision)
})

test_that("conversion errors are pygqa_error conditions that name the argument", {
  skip_if_no_pygqa()
  x <- random_array(1, 3, 8)
  mha <- new_mha(4, 2, x, x)
  expect_error(from_multi_head_attention(mha, 2.5), class = "pygqa_argument_error",
               regexp = "`num_key_value_heads`: expected a positive integer. Received: num_key_value_heads=2.5",
               fixed = TRUE)
  expect_error(from_multi_head_attention(mha), class = "pygqa_argument_error",
               regexp = "missing required argument(s): `num_key_value_heads`", fixed = TRUE)
  expect_error(from_multi_head_attention(mha, 3), class = "pygqa_error",
               regexp = "divides the 4 query heads of `layer`. Received: num_key_value_heads=3",
               fixed = TRUE)
  unbuilt <- keras$layers$MultiHeadAttention(num_heads = 2L, key_dim = 2L)
  expect_error(from_multi_head_attention(unbuilt, 1), class = "pygqa_error",
               regexp = "`layer`: expected a built layer")
  expect_error(from_multi_head_attention(3, 1), class = "pygqa_argument_error",
               regexp = "`layer`: expected a built attention layer")
  expect_error(to_keras(mha), class = "pygqa_error",
               regexp = "expected a built pygqa.GroupQueryAttention. Received: layer=<MultiHeadAttention")
  expect_error(from_keras(mha, "x"), class = "pygqa_argument_error", regexp = "must be named")
  expect_error(from_multi_head_attention(mha, 2, head_dim = 2), class = "pygqa_error",
               regexp = "Received: head_dim=2", fixed = TRUE)
})

test_that("layout_map() shards head axes and coerces R numbers", {
  skip_if_no_pygqa()
  devices <- as.list(sprintf("cpu:%d", 0:3))
  mesh <- keras$distribution$DeviceMesh(shape = c(1L, 4L), axis_names = c("batch", "model"),
                                        devices = devices)
  layouts <- layout_map(mesh, num_query_heads = 8, num_key_value_heads = 2)
  expect_true(inherits(layouts, "keras.src.distribution.distribution_lib.LayoutMap"))
  axes <- function(path) reticulate::py_to_r(layouts$get(path)$axes)
  expect_identical(axes("gqa/query/kernel"), list(NULL, "model", NULL))
  expect_identical(axes("gqa/attention_output/kernel"), list("model", NULL, NULL))
  expect_identical(axes("gqa/key/kernel"), list(NULL, NULL, NULL))  # 2 heads on 4 devices
  only <- layout_map(mesh, "model", layer_name = "gqa")
  expect_null(only$get("other/query/kernel"))
  expect_error(layout_map(mesh, num_query_heads = 6), class = "pygqa_error",
               regexp = "divisible by the size of mesh axis 'model' (4)", fixed = TRUE)
  expect_error(layout_map(mesh, num_key_value_heads = 1.5), class = "pygqa_argument_error",
               regexp = "Received: num_key_value_heads=1.5", fixed = TRUE)
  expect_error(layout_map(), class = "pygqa_argument_error", regexp = "`device_mesh`")
})
