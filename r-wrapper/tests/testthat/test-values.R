# Numbers: the R layer against the same layer built in Python with the same
# weights, and against grouped query attention written out in plain R.

layouts <- list(
  mha = list(head_dim = 4, num_query_heads = 4, num_key_value_heads = 4),
  gqa = list(head_dim = 3, num_query_heads = 6, num_key_value_heads = 2),
  mqa = list(head_dim = 5, num_query_heads = 4, num_key_value_heads = 1)
)

for (id in names(layouts)) {
  test_that(sprintf("%s: same output and scores as the Python twin and the R reference", id), {
    skip_if_no_pygqa()
    gqa <- do.call(layer_group_query_attention, layouts[[id]])
    q <- random_array(2, 7, 8)
    v <- random_array(2, 5, 6)
    k <- random_array(2, 5, 9)
    res <- gqa(q, v, key = k, return_attention_scores = TRUE)
    got <- lapply(res, as.array)
    twin <- python_twin_call(gqa, q, v, k, return_attention_scores = TRUE)
    expect_equal(got, twin, tolerance = tol_same_precision)
    ref <- reference_gqa(gqa$get_weights(), q, v, k)
    expect_equal(got, ref, tolerance = tol_reference)
  })
}

test_that("without biases the four kernels are the weights and values still match", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 2, num_query_heads = 4, num_key_value_heads = 2, use_bias = FALSE)
  x <- random_array(1, 9, 4)
  out <- as.array(gqa(x))
  expect_length(gqa$get_weights(), 4L)
  expect_equal(out, reference_gqa(gqa$get_weights(), x)$attention_output,
               tolerance = tol_reference)
})

test_that("R index order is kept: x[2, 3, 4] in R is x[1, 2, 3] in Python", {
  skip_if_no_pygqa()
  x <- random_array(2, 3, 4)
  np_x <- pygqa:::as_py_input(x)
  expect_identical(reticulate::py_to_r(np_x$dtype$name), "float32")
  expect_equal(reticulate::py_to_r(np_x$item(1L, 2L, 3L)), x[2, 3, 4], tolerance = 1e-7)
  gqa <- new_gqa(head_dim = 2, num_query_heads = 2, num_key_value_heads = 1)
  out_tensor <- gqa(x)
  out <- as.array(out_tensor)
  py_out <- keras$ops$convert_to_numpy(out_tensor)
  py_item <- reticulate::py_eval("lambda a: float(a[1, 2, 3])")
  expect_equal(py_item(py_out), out[2, 3, 4], tolerance = 1e-7)
})

test_that("use_causal_mask equals an explicit lower-triangular attention mask", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  q <- random_array(2, 5, 8)
  v <- random_array(2, 7, 8)
  causal_res <- lapply(gqa(q, v, use_causal_mask = TRUE, return_attention_scores = TRUE), as.array)
  mask <- causal(2, 5, 7)
  masked_res <- lapply(gqa(q, v, attention_mask = mask, return_attention_scores = TRUE), as.array)
  expect_equal(causal_res, masked_res, tolerance = tol_same_precision)
  expect_equal(causal_res, reference_gqa(gqa$get_weights(), q, v, allowed = mask),
               tolerance = tol_reference)
})

test_that("query/value/key masks from R logical arrays match the combined attention mask", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 2, num_query_heads = 4, num_key_value_heads = 2)
  q <- random_array(2, 4, 6)
  v <- random_array(2, 5, 6)
  query_mask <- matrix(c(TRUE, TRUE, TRUE, FALSE, TRUE, FALSE, TRUE, TRUE), 2, 4, byrow = TRUE)
  value_mask <- matrix(c(TRUE, FALSE, TRUE, TRUE, TRUE, TRUE, TRUE, TRUE, FALSE, FALSE),
                       2, 5, byrow = TRUE)
  allowed <- array(FALSE, c(2, 4, 5))
  for (b in 1:2) allowed[b, , ] <- outer(query_mask[b, ], value_mask[b, ], `&`)
  got <- lapply(gqa(q, v, query_mask = query_mask, value_mask = value_mask,
                    return_attention_scores = TRUE), as.array)
  expect_equal(got, reference_gqa(gqa$get_weights(), q, v, allowed = allowed),
               tolerance = tol_reference)
  expect_equal(got, python_twin_call(gqa, q, v, NULL,
                                     query_mask = reticulate::np_array(query_mask, dtype = "bool"),
                                     value_mask = reticulate::np_array(value_mask, dtype = "bool"),
                                     return_attention_scores = TRUE),
               tolerance = tol_same_precision)
  # 0/1 numbers work as a mask too.
  got01 <- as.array(gqa(q, v, query_mask = query_mask * 1, value_mask = value_mask * 1))
  expect_equal(got01, got$attention_output, tolerance = tol_same_precision)
  # A masked-out query row gets zero attention: its output is the output bias.
  bias <- gqa$get_weights()[[8]]
  expect_equal(got$attention_output[1, 4, ], as.vector(bias), tolerance = tol_same_precision)
  expect_true(all(got$attention_scores[1, , 4, ] == 0))
})

test_that("NA in a mask is refused in R", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  err <- expect_error(gqa(random_array(1, 2, 8), attention_mask = array(NA, c(1, 2, 2))),
                      class = "pygqa_argument_error")
  expect_identical(err$argument, "attention_mask")
  expect_identical(err$call[[1]], quote(gqa))
})

test_that("dropout only acts when training = TRUE", {
  skip_if_no_pygqa()
  gqa <- new_gqa(dropout = 0.5, seed = 1)
  x <- random_array(2, 6, 8)
  inference <- as.array(gqa(x, training = FALSE))
  expect_equal(as.array(gqa(x)), inference, tolerance = tol_same_precision)
  expect_equal(inference, reference_gqa(gqa$get_weights(), x)$attention_output,
               tolerance = tol_reference)
  trained <- as.array(gqa(x, training = TRUE))
  expect_gt(max(abs(trained - inference)), 1e-4)
})

test_that("weights set from R arrays give the expected numbers", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 2, num_query_heads = 2, num_key_value_heads = 1)
  x <- random_array(1, 3, 4)
  gqa(x)
  shapes <- lapply(gqa$get_weights(), function(w) dim(w) %||% length(w))
  weights <- lapply(shapes, function(d) array(stats::runif(prod(d), -1, 1), d))
  gqa$set_weights(weights)
  expect_equal(gqa$get_weights(), weights, tolerance = 1e-7)
  expect_equal(as.array(gqa(x)), reference_gqa(weights, x)$attention_output,
               tolerance = tol_reference)
})

test_that("calls take Python arguments by name only", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  x <- random_array(1, 2, 8)
  err <- expect_error(gqa(x, x, x, TRUE), class = "pygqa_argument_error")
  expect_match(conditionMessage(err), "must be named")
  err <- expect_error(gqa(x, return_scores = TRUE), class = "pygqa_error")
  expect_match(conditionMessage(err), "return_scores", fixed = TRUE)
})
