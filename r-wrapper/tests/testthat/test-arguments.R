# Argument checking done in R, before Python is involved: these tests run
# without Python.

test_that("the formals are the reference page's, in its order, with its defaults", {
  f <- formals(layer_group_query_attention)
  expect_identical(names(f), c(
    "object", "head_dim", "num_query_heads", "num_key_value_heads", "dropout", "use_bias",
    "kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "bias_constraint", "..."
  ))
  expect_identical(f$dropout, 0)
  expect_identical(f$use_bias, TRUE)
  expect_identical(f$kernel_initializer, "glorot_uniform")
  expect_identical(f$bias_initializer, "zeros")
  for (name in c("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                 "kernel_constraint", "bias_constraint")) {
    expect_null(f[[name]], label = name)
  }
  for (name in c("object", "head_dim", "num_query_heads", "num_key_value_heads")) {
    expect_identical(f[[name]], quote(expr = ), label = name)
  }
})

test_that("whole numbers become integers, doubles and integers alike", {
  expect_identical(pygqa:::as_whole_number(4, "head_dim"), 4L)
  expect_identical(pygqa:::as_whole_number(4L, "head_dim"), 4L)
  expect_identical(pygqa:::as_whole_number(1e3, "head_dim"), 1000L)
  expect_identical(pygqa:::as_whole_number(0, "seed", min = 0L), 0L)
  args <- pygqa:::coerce_integer_arguments(
    list(head_dim = 8, num_query_heads = 4L, num_key_value_heads = 2, seed = 7, dropout = 0.5),
    call = NULL
  )
  expect_identical(args, list(head_dim = 8L, num_query_heads = 4L, num_key_value_heads = 2L,
                              seed = 7L, dropout = 0.5))
  expect_identical(pygqa:::coerce_integer_arguments(list(seed = NULL), NULL), list(seed = NULL))
})

bad_sizes <- list(
  "4.5" = 4.5, "NA" = NA, "NA_real_" = NA_real_, "\"4\"" = "4", "TRUE" = TRUE,
  "c(4, 8)" = c(4, 8), "0" = 0, "-1" = -1, "Inf" = Inf, "NULL" = NULL,
  "numeric(0)" = numeric(0), "3e+10" = 3e10, "list(4)" = list(4), "4+0i" = 4 + 0i
)

for (argument in c("head_dim", "num_query_heads", "num_key_value_heads")) {
  for (label in names(bad_sizes)) {
    test_that(sprintf("%s = %s is refused in R with an error naming both", argument, label), {
      args <- list(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
      args[argument] <- list(bad_sizes[[label]])
      err <- expect_error(do.call(layer_group_query_attention, args),
                          class = "pygqa_argument_error")
      expect_s3_class(err, c("pygqa_argument_error", "pygqa_error", "error", "condition"),
                      exact = TRUE)
      expect_identical(err$argument, argument)
      expect_identical(
        conditionMessage(err),
        sprintf("Received an invalid value for `%s`: expected a positive integer. Received: %s=%s",
                argument, argument, label)
      )
    })
  }
}

test_that("a bad seed is refused in R; a NULL seed is allowed", {
  for (seed in list(1.5, -1, "1", TRUE, c(1, 2), NA)) {
    err <- expect_error(new_gqa(seed = seed), class = "pygqa_argument_error")
    expect_identical(err$argument, "seed")
    expect_match(conditionMessage(err), "`seed`: expected NULL or a non-negative integer",
                 fixed = TRUE)
  }
})

test_that("unnamed arguments in ... are an error, raised before Python", {
  err <- expect_error(
    layer_group_query_attention(NULL, 4, 4, 2, 0, TRUE, "glorot_uniform", "zeros",
                                NULL, NULL, NULL, NULL, NULL, "extra"),
    class = "pygqa_argument_error"
  )
  expect_match(conditionMessage(err), "must be named", fixed = TRUE)
  expect_match(conditionMessage(err), "position(s) 1", fixed = TRUE)
  expect_identical(err$argument, "...")
})

test_that("missing required arguments are named in the error", {
  err <- expect_error(layer_group_query_attention(head_dim = 4), class = "pygqa_argument_error")
  expect_identical(
    conditionMessage(err),
    "layer_group_query_attention() is missing required argument(s): `num_query_heads`, `num_key_value_heads`"
  )
  expect_identical(err$argument, "num_query_heads")
})

test_that("the error's call is the user's call", {
  err <- expect_error(layer_group_query_attention(head_dim = 0.5, num_query_heads = 1,
                                                  num_key_value_heads = 1))
  expect_identical(err$call[[1]], quote(layer_group_query_attention))
})

test_that("pip requirements carry the backend extra; directories install editable", {
  expect_identical(pygqa:::pip_requirement("pygqa", "jax"),
                   list(requirement = "pygqa[jax]", pip_options = character()))
  expect_identical(pygqa:::pip_requirement("pygqa==0.1.0", "torch")$requirement,
                   "pygqa[torch]==0.1.0")
  expect_identical(pygqa:::pip_requirement("pygqa[jax]", "tensorflow")$requirement, "pygqa[jax]")
  dir <- tempfile("pygqa-src")
  dir.create(dir)
  on.exit(unlink(dir, recursive = TRUE), add = TRUE)
  spec <- pygqa:::pip_requirement(dir, "tensorflow")
  expect_identical(spec$pip_options, "-e")
  expect_identical(spec$requirement, paste0(normalizePath(dir, winslash = "/"), "[tensorflow]"))
  expect_error(pygqa:::pip_requirement(c("a", "b"), "jax"), class = "pygqa_argument_error")
  expect_error(install_pygqa(backend = "mxnet"), "should be one of")
})

test_that("a positional extra value, matched to `object` by R, is reported as `object`", {
  skip_if_no_pygqa()
  err <- expect_error(
    layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2, 99),
    class = "pygqa_argument_error"
  )
  expect_identical(err$argument, "object")
  expect_match(conditionMessage(err), "Received: object=99, an R vector without dim", fixed = TRUE)
  expect_match(conditionMessage(err), "`seed = 99`", fixed = TRUE)
  expect_no_match(conditionMessage(err), "query")
})

test_that("flash_attention travels through `...`: kept in the config, same numbers every path", {
  skip_if_no_pygqa()
  set.seed(3)
  x <- random_array(2, 6, 8)
  layers <- lapply(list(NULL, TRUE, FALSE), function(flash) {
    args <- list(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
    if (!is.null(flash)) args$flash_attention <- flash
    do.call(layer_group_query_attention, args)
  })
  expect_identical(lapply(layers, function(l) l$get_config()$flash_attention),
                   list(NULL, TRUE, FALSE))
  out <- as.array(layers[[1]](x, use_causal_mask = TRUE))
  for (layer in layers[-1]) {
    layer(x)
    layer$set_weights(layers[[1]]$get_weights())
    expect_equal(as.array(layer(x, use_causal_mask = TRUE)), out, tolerance = tol_same_precision)
  }
  err <- expect_error(layers[[2]](x, return_attention_scores = TRUE), class = "pygqa_error")
  expect_match(conditionMessage(err), "flash_attention=True, return_attention_scores=True",
               fixed = TRUE)
  err <- expect_error(layer_group_query_attention(head_dim = 4, num_query_heads = 4,
                                                  num_key_value_heads = 2, flash_attention = "no"),
                      class = "pygqa_error")
  expect_match(conditionMessage(err), "Received: flash_attention='no'", fixed = TRUE)
})

test_that("sizes whose weights cannot fit in memory are refused when the layer builds", {
  skip_if_no_pygqa()
  x <- random_array(1, 3, 8)
  for (argument in c("head_dim", "num_query_heads")) {
    args <- list(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)
    args[[argument]] <- 1e9
    gqa <- do.call(layer_group_query_attention, args)
    err <- expect_error(gqa(x), class = "pygqa_error")
    expect_match(conditionMessage(err), sprintf("invalid value for `%s`", argument), fixed = TRUE)
    expect_match(conditionMessage(err), "GiB")
    expect_match(conditionMessage(err), sprintf("Received: %s=1000000000", argument), fixed = TRUE)
  }
})
