# Creating the layer: what reaches Python, and the object R users get back.

test_that("sizes given as R doubles reach Python as integers", {
  skip_if_no_pygqa()
  gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
  expect_s3_class(gqa, "pygqa_layer")
  expect_true(is.function(gqa))
  config <- reticulate::py_to_r(reticulate::r_to_py(gqa)$get_config())
  expect_identical(config$head_dim, 4L)
  expect_identical(config$num_query_heads, 4L)
  expect_identical(config$num_key_value_heads, 2L)
  builtins <- reticulate::import_builtins(convert = FALSE)
  py <- reticulate::r_to_py(gqa)
  expect_identical(reticulate::py_to_r(builtins$type(py$head_dim)$`__name__`), "int")
  x <- random_array(2, 5, 8)
  expect_identical(dim(as.array(gqa(x))), c(2L, 5L, 8L))
})

test_that("only the arguments the caller wrote are forwarded; Python's defaults apply", {
  skip_if_no_pygqa()
  # Python's defaults, read from Python itself.
  python_default <- function(name) reticulate::py_eval(sprintf(
    "__import__('inspect').signature(__import__('pygqa').GroupQueryAttention).parameters['%s'].default",
    name
  ))
  gqa <- new_gqa()
  config <- gqa$get_config()
  expect_identical(config$dropout, python_default("dropout"))
  expect_identical(config$dropout, 0)
  expect_identical(config$use_bias, TRUE)
  gqa2 <- new_gqa(dropout = 0.25, use_bias = FALSE, name = "gqa_two", dtype = "float32",
                  trainable = FALSE, seed = 3)
  config2 <- gqa2$get_config()
  expect_identical(config2$dropout, 0.25)
  expect_false(config2$use_bias)
  expect_identical(gqa2$name, "gqa_two")
  expect_false(gqa2$trainable)
  expect_identical(gqa2$seed, 3L)
})

test_that("Python-side argument errors arrive as pygqa_error with Python's message only", {
  skip_if_no_pygqa()
  err <- expect_error(new_gqa(num_query_heads = 6, num_key_value_heads = 4), class = "pygqa_error")
  expect_s3_class(err, c("pygqa_error", "error", "condition"), exact = TRUE)
  expect_identical(err$python_type, "ValueError")
  expect_identical(
    conditionMessage(err),
    paste("Received an invalid value for `num_key_value_heads`: expected a positive integer",
          "that divides `num_query_heads`. Received: num_query_heads=6, num_key_value_heads=4")
  )
  expect_no_match(conditionMessage(err), "py_last_error|Traceback")
  expect_identical(err$call[[1]], quote(pygqa::layer_group_query_attention))

  err <- expect_error(new_gqa(dropout = 1.5), class = "pygqa_error")
  expect_match(conditionMessage(err), "`dropout`", fixed = TRUE)
  expect_match(conditionMessage(err), "1.5", fixed = TRUE)

  err <- expect_error(new_gqa(sliding_windw = 3), class = "pygqa_error")
  expect_identical(err$python_type, "TypeError")
  expect_match(conditionMessage(err), "sliding_windw", fixed = TRUE)
})

test_that("the layer prints its sizes and whether it is built", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 3, num_query_heads = 6, num_key_value_heads = 3)
  expect_output(print(gqa), "head_dim = 3, num_query_heads = 6, num_key_value_heads = 3")
  expect_output(print(gqa), "not built yet")
  gqa(random_array(1, 2, 5))
  expect_output(print(gqa), "8 weights")
})

test_that("`$` reaches the Python layer: weights, attributes, settable fields", {
  skip_if_no_pygqa()
  gqa <- new_gqa(head_dim = 2, num_query_heads = 4, num_key_value_heads = 2)
  gqa(random_array(1, 3, 6), random_array(1, 5, 7))
  weights <- gqa$get_weights()
  expect_identical(lapply(weights, dim), list(
    c(6L, 4L, 2L), c(4L, 2L), c(7L, 2L, 2L), c(2L, 2L),
    c(7L, 2L, 2L), c(2L, 2L), c(4L, 2L, 6L), 6L
  ))
  zeros <- lapply(weights, function(w) array(0, dim(w) %||% length(w)))
  gqa$set_weights(zeros)
  expect_true(all(vapply(gqa$get_weights(), function(w) all(w == 0), logical(1))))
  expect_identical(gqa[["count_params"]](), sum(lengths(weights)))
  gqa$trainable <- FALSE
  expect_false(reticulate::r_to_py(gqa)$trainable)
  expect_true("get_weights" %in% utils::.DollarNames(gqa, "get_"))

  err <- expect_error(gqa$set_weights(weights[1:3]), class = "pygqa_error")
  expect_match(conditionMessage(err), "expecting 8 weights", fixed = TRUE)
})

test_that("r_to_py() gives the Python layer, so Python functions accept the R object", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  py <- reticulate::r_to_py(gqa)
  expect_true(inherits(py, "keras.src.layers.layer.Layer"))
  expect_false(inherits(py, "pygqa_layer"))
  model <- keras$Sequential(list(keras$Input(shape = c(5L, 8L))))
  model$add(gqa)
  expect_identical(length(model$layers), 1L)
  expect_identical(unlist(model$output_shape), c(5L, 8L))
})
