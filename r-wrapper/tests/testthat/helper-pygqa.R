# Shared helpers for the tests.

# Skips a test that needs Python, Keras and the `pygqa` module when they are
# missing, except in CI (PYGQA_REQUIRE_PYTHON=1), where a missing Python is a
# failure: a green run must mean the Python side really was tested.
skip_if_no_pygqa <- function() {
  if (pygqa::pygqa_available()) {
    return(invisible(TRUE))
  }
  reason <- tryCatch({
    pygqa:::pygqa_module()
    "unknown"
  }, error = conditionMessage)
  if (identical(Sys.getenv("PYGQA_REQUIRE_PYTHON"), "1")) {
    fail(paste("PYGQA_REQUIRE_PYTHON=1 but the Python side is unavailable:", reason))
  }
  skip(paste("Python module pygqa unavailable:", reason))
}

# float32 arithmetic against a float32 twin: differences come only from
# operation order, so 1e-6 on unit-scale values. Against the float64 R
# reference the float32 rounding of inputs and weights adds up to ~1e-6 per
# term; 1e-5 bounds it for the small sizes used here.
tol_same_precision <- 1e-6
tol_reference <- 1e-5

# Unit-scale random inputs of a given shape, reproducible per test.
random_array <- function(...) {
  dims <- c(...)
  array(stats::runif(prod(dims), -1, 1), dim = dims)
}

py_module <- function(name) reticulate::import(name, convert = FALSE)

# The same inputs through a second Python layer built in Python from the R
# layer's config and given the R layer's weights; returns R arrays.
python_twin_call <- function(layer, query, value = NULL, key = NULL, ...) {
  pygqa_py <- py_module("pygqa")
  np <- py_module("numpy")
  ops <- py_module("keras")$ops
  as_np <- function(x) if (is.null(x)) NULL else np$asarray(x, dtype = "float32")
  py_layer <- reticulate::r_to_py(layer)
  twin <- pygqa_py$GroupQueryAttention$from_config(py_layer$get_config())
  q <- as_np(query)
  v <- as_np(value)
  k <- as_np(key)
  twin(q, v, k)
  twin$set_weights(py_layer$get_weights())
  out <- twin(q, v, k, ...)
  to_r <- function(t) reticulate::py_to_r(ops$convert_to_numpy(t))
  if (inherits(out, "python.builtin.tuple")) {
    list(attention_output = to_r(reticulate::py_get_item(out, 0L)),
         attention_scores = to_r(reticulate::py_get_item(out, 1L)))
  } else {
    to_r(out)
  }
}

# Grouped query attention written out in plain R (double precision) from the
# weights in Keras order; `allowed[b, t, s]` is TRUE where attention is allowed.
# A query row with nothing allowed gets zero attention, as pygqa defines.
reference_gqa <- function(weights, query, value = query, key = value, allowed = NULL) {
  w <- if (length(weights) == 8L) weights else
    list(weights[[1]], NULL, weights[[2]], NULL, weights[[3]], NULL, weights[[4]], NULL)
  n_batch <- dim(query)[1]
  n_t <- dim(query)[2]
  n_s <- dim(value)[2]
  u <- dim(w[[1]])[2]
  h <- dim(w[[1]])[3]
  kv <- dim(w[[3]])[2]
  m_out <- dim(w[[7]])[3]
  bias <- function(b, i, n, width) if (is.null(b)) 0 else matrix(b[i, ], n, width, byrow = TRUE)
  heads <- function(kernel, i) matrix(kernel[, i, ], dim(kernel)[1], h)
  rows <- function(x, b) matrix(x[b, , ], dim(x)[2], dim(x)[3])
  output <- array(0, c(n_batch, n_t, m_out))
  scores <- array(0, c(n_batch, u, n_t, n_s))
  for (b in seq_len(n_batch)) {
    mask <- if (is.null(allowed)) matrix(TRUE, n_t, n_s) else matrix(allowed[b, , ], n_t, n_s)
    for (i in seq_len(u)) {
      g <- (i - 1L) %/% (u %/% kv) + 1L  # query head i uses key/value head g
      q <- rows(query, b) %*% heads(w[[1]], i) + bias(w[[2]], i, n_t, h)
      k <- rows(key, b) %*% heads(w[[3]], g) + bias(w[[4]], g, n_s, h)
      v <- rows(value, b) %*% heads(w[[5]], g) + bias(w[[6]], g, n_s, h)
      logits <- q %*% t(k) / sqrt(h)
      logits[!mask] <- -Inf
      p <- exp(logits - apply(logits, 1, function(r) if (all(is.infinite(r))) 0 else max(r)))
      p <- p / pmax(rowSums(p), .Machine$double.xmin)
      p[!mask] <- 0
      scores[b, i, , ] <- p
      output[b, , ] <- output[b, , ] + (p %*% v) %*% matrix(w[[7]][i, , ], h, m_out)
    }
    if (!is.null(w[[8]])) output[b, , ] <- output[b, , ] + matrix(w[[8]], n_t, m_out, byrow = TRUE)
  }
  list(attention_output = output, attention_scores = scores)
}

causal <- function(n_batch, n_t, n_s) {
  array(rep(outer(seq_len(n_t), seq_len(n_s), ">="), each = n_batch), c(n_batch, n_t, n_s))
}

new_gqa <- function(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2, ...) {
  pygqa::layer_group_query_attention(head_dim = head_dim, num_query_heads = num_query_heads,
                                     num_key_value_heads = num_key_value_heads, ...)
}

`%||%` <- function(x, y) if (is.null(x)) y else x
