# What layer_group_query_attention() returns for each kind of `object`.

test_that("missing or NULL object gives the layer", {
  skip_if_no_pygqa()
  expect_s3_class(new_gqa(), "pygqa_layer")
  expect_s3_class(layer_group_query_attention(NULL, 4, 4, 2), "pygqa_layer")
})

test_that("a Sequential model gets the layer added and is returned invisibly", {
  skip_if_no_pygqa()
  model <- keras$Sequential(list(keras$Input(shape = c(6L, 8L))))
  expect_invisible(res <- layer_group_query_attention(model, head_dim = 4, num_query_heads = 4,
                                                     num_key_value_heads = 2, name = "gqa"))
  expect_identical(res, model)
  # Piping twice stacks two layers.
  model |>
    layer_group_query_attention(head_dim = 2, num_query_heads = 2, num_key_value_heads = 1)
  expect_identical(length(model$layers), 2L)
  expect_identical(model$layers[[1]]$name, "gqa")
  x <- random_array(3, 6, 8)
  out <- as.array(model(x))
  expect_identical(dim(out), c(3L, 6L, 8L))
  expect_equal(out, as.array(model$predict(x, verbose = 0L)), tolerance = tol_same_precision)
})

test_that("the pipe evaluates the model before creating the layer", {
  skip_if_no_pygqa()
  order <- character()
  make_model <- function() {
    order <<- c(order, "model")
    keras$Sequential(list(keras$Input(shape = c(3L, 4L))))
  }
  make_head_dim <- function() {
    order <<- c(order, "head_dim")
    2
  }
  make_model() |> layer_group_query_attention(make_head_dim(), 2, 2)
  expect_identical(order, c("model", "head_dim"))
})

test_that("an R array gives the self-attention output", {
  skip_if_no_pygqa()
  x <- random_array(2, 5, 8)
  out <- layer_group_query_attention(x, head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
  expect_identical(dim(as.array(out)), c(2L, 5L, 8L))
})

test_that("a tensor, a NumPy array and a Keras input all work as object", {
  skip_if_no_pygqa()
  x <- random_array(2, 5, 8)
  tensor <- keras$ops$convert_to_tensor(reticulate::np_array(x, dtype = "float32"))
  expect_identical(dim(as.array(layer_group_query_attention(tensor, 4, 4, 2))), c(2L, 5L, 8L))
  numpy <- reticulate::np_array(x, dtype = "float32")
  expect_identical(dim(as.array(layer_group_query_attention(numpy, 4, 4, 2))), c(2L, 5L, 8L))
  input <- keras$Input(shape = c(5L, 8L))
  symbolic <- layer_group_query_attention(input, 4, 4, 2)
  expect_identical(unlist(reticulate::py_to_r(symbolic$shape)), c(5L, 8L))
  model <- keras$Model(input, symbolic)
  expect_identical(dim(as.array(model(x))), c(2L, 5L, 8L))
})

test_that("an unnamed list is (query, value) or (query, value, key)", {
  skip_if_no_pygqa()
  q <- random_array(2, 3, 8)
  v <- random_array(2, 7, 6)
  k <- random_array(2, 7, 5)
  out <- layer_group_query_attention(list(q, v), 4, 4, 2)
  expect_identical(dim(as.array(out)), c(2L, 3L, 8L))
  out <- layer_group_query_attention(list(q, v, k), 4, 4, 2)
  expect_identical(dim(as.array(out)), c(2L, 3L, 8L))
})

test_that("a named list passes any call argument by name", {
  skip_if_no_pygqa()
  q <- random_array(2, 4, 8)
  v <- random_array(2, 6, 8)
  mask <- array(TRUE, c(2, 4, 6))
  res <- layer_group_query_attention(
    list(query = q, value = v, attention_mask = mask, use_causal_mask = TRUE,
         return_attention_scores = TRUE),
    head_dim = 4, num_query_heads = 4, num_key_value_heads = 2
  )
  expect_named(res, c("attention_output", "attention_scores"))
  expect_identical(dim(as.array(res$attention_output)), c(2L, 4L, 8L))
  scores <- as.array(res$attention_scores)
  expect_identical(dim(scores), c(2L, 4L, 4L, 6L))
  # The causal mask is applied: query position 1 only sees key position 1.
  expect_equal(scores[, , 1, 1], array(1, c(2, 4)), tolerance = tol_same_precision)
  expect_true(all(scores[, , 1, -1] == 0))
})

test_that("a Python list of inputs is treated like an R list", {
  skip_if_no_pygqa()
  q <- reticulate::np_array(random_array(1, 3, 4), dtype = "float32")
  pylist <- reticulate::r_to_py(list(q, q))
  out <- layer_group_query_attention(pylist, 2, 2, 1)
  expect_identical(dim(as.array(out)), c(1L, 3L, 4L))
})

test_that("composition errors name the user's call and keep Python's message", {
  skip_if_no_pygqa()
  err <- expect_error(
    layer_group_query_attention(list(random_array(2, 3, 8), random_array(2, 4, 6),
                                     random_array(2, 5, 6)), 4, 4, 2),
    class = "pygqa_error"
  )
  expect_identical(err$call[[1]], quote(layer_group_query_attention))
  expect_no_match(conditionMessage(err), "Exception encountered|Arguments received")
})
