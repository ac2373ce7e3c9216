# The bad-input matrix: every row is an R call that must fail with a classed
# pygqa_error naming the argument and showing the value received, never a
# Python traceback. Rows: id, code, class, strings the message contains.

L <- function(...) pygqa::layer_group_query_attention(...)
sizes <- "num_query_heads = 4, num_key_value_heads = 2"
arg_err <- "pygqa_argument_error"
py_err <- "pygqa_error"  # raised in Python

bad_inputs <- list(
  # Constructor: wrong type, sign, non-integer, NA, NULL, unknown keyword.
  list("head_dim-fraction", "L(head_dim = 4.5, %s)", arg_err, c("`head_dim`", "head_dim=4.5")),
  list("head_dim-zero", "L(head_dim = 0, %s)", arg_err, c("`head_dim`", "head_dim=0")),
  list("head_dim-negative", "L(head_dim = -2, %s)", arg_err, c("`head_dim`", "head_dim=-2")),
  list("head_dim-string", 'L(head_dim = "4", %s)', arg_err, c("`head_dim`", 'head_dim="4"')),
  list("head_dim-NA", "L(head_dim = NA, %s)", arg_err, c("`head_dim`", "head_dim=NA")),
  list("head_dim-NULL", "L(head_dim = NULL, %s)", arg_err, c("`head_dim`", "head_dim=NULL")),
  list("head_dim-Inf", "L(head_dim = Inf, %s)", arg_err, c("`head_dim`", "head_dim=Inf")),
  list("head_dim-vector", "L(head_dim = c(4, 8), %s)", arg_err, c("head_dim=c(4, 8)")),
  list("query_heads-NA", "L(head_dim = 4, num_query_heads = NA_real_, num_key_value_heads = 2)",
       arg_err, c("`num_query_heads`", "num_query_heads=NA_real_")),
  list("kv_heads-logical", "L(head_dim = 4, num_query_heads = 4, num_key_value_heads = TRUE)",
       arg_err, c("`num_key_value_heads`", "num_key_value_heads=TRUE")),
  list("heads-not-divisible", "L(head_dim = 4, num_query_heads = 6, num_key_value_heads = 4)",
       py_err, c("divides `num_query_heads`", "num_query_heads=6, num_key_value_heads=4")),
  list("head_dim-missing", "L(num_query_heads = 4, num_key_value_heads = 2)", arg_err,
       c("missing required argument(s): `head_dim`")),
  list("dropout-one", "L(head_dim = 4, %s, dropout = 1)", py_err, c("`dropout`", "dropout=1.0")),
  list("dropout-negative", "L(head_dim = 4, %s, dropout = -0.5)", py_err, c("dropout=-0.5")),
  list("dropout-NA", "L(head_dim = 4, %s, dropout = NA)", arg_err, c("`dropout`", "dropout=NA")),
  list("dropout-string", 'L(head_dim = 4, %s, dropout = "0.1")', py_err, c("dropout='0.1'")),
  list("use_bias-NA", "L(head_dim = 4, %s, use_bias = NA)", arg_err, c("`use_bias`", "use_bias=NA")),
  list("use_bias-number", "L(head_dim = 4, %s, use_bias = 1)", py_err, c("`use_bias`", "use_bias=1.0")),
  list("use_bias-string", 'L(head_dim = 4, %s, use_bias = "yes")', py_err, c("use_bias='yes'")),
  list("initializer-NA", "L(head_dim = 4, %s, kernel_initializer = NA)", arg_err,
       c("`kernel_initializer`", "kernel_initializer=NA")),
  list("initializer-unknown", 'L(head_dim = 4, %s, bias_initializer = "nope")', py_err,
       c("nope")),
  list("regularizer-NA", "L(head_dim = 4, %s, kernel_regularizer = NA)", arg_err,
       c("`kernel_regularizer`", "kernel_regularizer=NA")),
  list("constraint-NA", "L(head_dim = 4, %s, bias_constraint = NA_character_)", arg_err,
       c("`bias_constraint`", "bias_constraint=NA_character_")),
  list("seed-negative", "L(head_dim = 4, %s, seed = -1)", arg_err, c("`seed`", "seed=-1")),
  list("seed-NA", "L(head_dim = 4, %s, seed = NA)", arg_err, c("`seed`", "seed=NA")),
  list("name-NA", "L(head_dim = 4, %s, name = NA)", arg_err, c("`name`", "name=NA")),
  list("unknown-keyword", "L(head_dim = 4, %s, window = 4)", py_err,
       c("unknown keyword", "window=4")),
  list("sliding_window-zero", "L(head_dim = 4, %s, sliding_window = 0)", arg_err,
       c("`sliding_window`", "sliding_window=0")),
  list("sliding_window-fraction", "L(head_dim = 4, %s, sliding_window = 2.5)", arg_err,
       c("`sliding_window`", "sliding_window=2.5")),
  list("use_gate-NA", "L(head_dim = 4, %s, use_gate = NA)", arg_err,
       c("`use_gate`", "use_gate=NA")),
  list("unnamed-dots", "L(NULL, 4, 4, 2, 0, TRUE, 'glorot_uniform', 'zeros', NULL, NULL, NULL, NULL, NULL, 3)",
       arg_err, c("`...`", "must be named")),
  # Call time: rank, batch, lengths, masks, types, empty and NA inputs.
  list("query-rank-2", "gqa(x(2, 8))", py_err, c("`query`", "rank 3", "query.shape=(2, 8)")),
  list("value-rank-4", "gqa(q, x(2, 5, 8, 1))", py_err, c("`value`", "value.shape=(2, 5, 8, 1)")),
  list("query-value-batch", "gqa(q, x(3, 5, 8))", py_err,
       c("`query` and `value`", "value.shape=(3, 5, 8)")),
  list("key-value-length", "gqa(q, v, x(2, 6, 8))", py_err,
       c("`key` and `value`", "key.shape=(2, 6, 8)")),
  list("query-other-features", "gqa(x(2, 7, 6))", py_err,
       c("built for 8 features in `query`", "query.shape=(2, 7, 6)")),
  list("query-empty", "gqa(x(0, 7, 8))", py_err, c("`query`", "non-empty", "query.shape=(0, 7, 8)")),
  list("value-empty-sequence", "gqa(q, x(2, 0, 8))", py_err, c("`value`", "value.shape=(2, 0, 8)")),
  list("query-empty-vector", "gqa(numeric(0))", py_err, c("`query`", "query.shape=(0,)")),
  list("query-string", 'gqa(array("a", c(2, 7, 8)))', arg_err,
       c("`query`", "numeric array", "query=<character array, dim c(2, 7, 8)>")),
  list("value-string", 'gqa(q, "abc")', arg_err, c("`value`", 'value="abc"')),
  list("query-NA", "gqa(array(NA_real_, c(2, 7, 8)))", arg_err,
       c("`query`", "without NA", "query=<double array, dim c(2, 7, 8)>")),
  list("query-NULL", "gqa(NULL)", py_err, c("`query`", "query=None")),
  list("query-list", "gqa(list(1, 2))", py_err, c("`query`", "of type list")),
  list("attention_mask-shape", "gqa(q, v, attention_mask = array(TRUE, c(2, 5, 7)))", py_err,
       c("`attention_mask`", "(2, 7, 5)", "attention_mask.shape=(2, 5, 7)")),
  list("query_mask-shape", "gqa(q, v, query_mask = array(TRUE, c(2, 5)))", py_err,
       c("`query_mask`", "query_mask.shape=(2, 5)")),
  list("value_mask-NA", "gqa(q, v, value_mask = array(NA, c(2, 5)))", arg_err,
       c("`value_mask`", "without NA")),
  list("attention_mask-additive", "gqa(q, v, attention_mask = array(c(0, -Inf), c(2, 7, 5)))",
       arg_err, c("`attention_mask`", "numbers 0 and 1 only", "mask == 0")),
  list("key_mask-string", 'gqa(q, v, key_mask = array("yes", c(2, 5)))', arg_err,
       c("`key_mask`", "key_mask=<character array, dim c(2, 5)>")),
  list("call-unknown-keyword", "gqa(q, v, unknown_arg = TRUE)", py_err,
       c("unexpected keyword argument 'unknown_arg'")),
  list("call-unnamed-dots", "gqa(q, v, v, TRUE)", arg_err, c("must be named")),
  list("use_causal_mask-NA", "gqa(q, v, use_causal_mask = NA)", arg_err,
       c("`use_causal_mask`", "TRUE or FALSE", "use_causal_mask=NA")),
  list("return_attention_scores-string", 'gqa(q, v, return_attention_scores = "yes")', py_err,
       c("`return_attention_scores`", "return_attention_scores='yes'")),
  list("training-NA", "gqa(q, v, training = NA)", arg_err, c("`training`", "training=NA")),
  list("cache_update_index-fraction", "gqa(q, cache = gqa$empty_cache(2, 9), cache_update_index = 0.5)",
       arg_err, c("`cache_update_index`", "cache_update_index=0.5"))
)

test_that("the bad-input table has at least 30 rows, with unique ids", {
  expect_gte(length(bad_inputs), 30L)
  ids <- vapply(bad_inputs, `[[`, "", 1L)
  expect_false(anyDuplicated(ids) > 0L)
})

test_that("every bad input gives a classed error that names the argument and the value", {
  skip_if_no_pygqa()
  env <- new.env()
  env$L <- L
  env$x <- function(...) random_array(...)
  env$gqa <- new_gqa()
  env$q <- env$x(2, 7, 8)
  env$v <- env$x(2, 5, 8)
  env$gqa(env$q, env$v)  # built for 8 features
  for (row in bad_inputs) {
    code <- if (grepl("%s", row[[2]], fixed = TRUE)) sprintf(row[[2]], sizes) else row[[2]]
    err <- tryCatch({
      eval(parse(text = code), envir = env)
      NULL
    }, error = identity)
    expect_false(is.null(err), label = paste(row[[1]], "raised no error"))
    if (is.null(err)) next
    expect_s3_class(err, row[[3]])
    expect_s3_class(err, "pygqa_error")
    message <- conditionMessage(err)
    for (text in row[[4]]) {
      expect_true(grepl(text, message, fixed = TRUE),
                  label = sprintf("[%s] message contains %s: %s", row[[1]], text, message))
    }
    expect_false(grepl("Traceback|py_last_error|Exception encountered", message),
                 label = paste(row[[1]], "has no Python traceback"))
  }
})

test_that("numbers 0 and 1 as a mask mean the same as the logical mask", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  q <- random_array(2, 7, 8)
  v <- random_array(2, 5, 8)
  mask <- array(stats::runif(2 * 7 * 5) < 0.5, c(2, 7, 5))
  expect_identical(as.array(gqa(q, v, attention_mask = mask * 1)),
                   as.array(gqa(q, v, attention_mask = mask)))
  expect_false(isTRUE(all.equal(as.array(gqa(q, v, attention_mask = mask)), as.array(gqa(q, v)))))
})
