# The R face of a Python GroupQueryAttention layer: an R function (so that
# `gqa(q, v)` converts R inputs and names the outputs) that carries the Python
# layer in the attribute "py_object". `$` reaches the Python layer's attributes
# and methods, and r_to_py() hands the Python layer to anything Python-side,
# such as `model$add(gqa)` or keras3 functions.

new_pygqa_layer <- function(py_layer) {
  force(py_layer)
  layer <- function(query, value = NULL, key = NULL, ...) {
    call_layer(py_layer, query, value, key, ..., .call = sys.call())
  }
  structure(layer, class = c("pygqa_layer", "function"), py_object = py_layer)
}

py_layer_of <- function(x) attr(x, "py_object", exact = TRUE)

mask_arguments <- c("query_mask", "value_mask", "key_mask", "attention_mask")
flag_arguments <- c("use_causal_mask", "return_attention_scores", "training")

call_layer <- function(py_layer, query, value = NULL, key = NULL, ..., .call = NULL) {
  extra <- list(...)
  check_named(extra, "the layer call", .call)
  for (name in intersect(names(extra), mask_arguments)) {
    if (!is.null(extra[[name]])) extra[[name]] <- as_py_mask(extra[[name]], name, .call)
  }
  for (name in intersect(names(extra), flag_arguments)) {
    # NA would reach Python as a truthy value; a flag must be TRUE or FALSE.
    flag <- extra[[name]]
    if (is.logical(flag) && (length(flag) != 1L || is.na(flag))) {
      stop_argument(name, flag, "TRUE or FALSE", .call)
    }
  }
  if (!is.null(extra$cache)) extra$cache <- as_py_input(extra$cache)
  if (!is.null(extra$positions)) extra$positions <- as_py_positions(extra$positions, .call)
  if (is.numeric(extra$cache_update_index) && !is.object(extra$cache_update_index)) {
    # A count of positions, so 0 for the first call, as in Python.
    extra$cache_update_index <- as_whole_number(extra$cache_update_index,
                                                "cache_update_index", min = 0L, .call)
  }
  # Build the list with NULLs kept: value = NULL means self-attention in Python.
  args <- c(list(query = as_py_input(query), value = as_py_input(value),
                 key = as_py_input(key)), extra)
  out <- with_python_errors(do.call(py_layer, args), .call)
  output_names <- c("attention_output",
                    if (isTRUE(extra$return_attention_scores)) "attention_scores",
                    if (!is.null(extra$cache)) "cache")
  if (length(output_names) > 1L) {
    out <- as.list(out)
    names(out) <- output_names
  }
  out
}

# Rotary positions: an R integer vector (T) or matrix (batch x T), or whole
# doubles (`c(0, 1, 2)`), become an int32 NumPy array; Python objects pass
# through (Python checks their dtype and shape).
as_py_positions <- function(x, call = NULL) {
  if (inherits(x, "python.builtin.object")) {
    return(x)
  }
  ok <- (is.integer(x) || is.double(x)) && !is.object(x) && length(x) > 0L &&
    !anyNA(x) && all(is.finite(x)) && all(x == trunc(x)) && all(abs(x) <= .Machine$integer.max) &&
    length(dim(x)) <= 2L
  if (!ok) {
    stop_argument("positions", x, paste0(
      "whole numbers without NA, a vector (one per query row) or a matrix (batch x rows)"), call)
  }
  reticulate::np_array(array(as.integer(x), dim = dim(x) %||% length(x)), dtype = "int32",
                       order = "C")
}

check_named <- function(args, where, call) {
  names <- names(args) %||% rep("", length(args))
  unnamed <- which(!nzchar(names))
  if (length(unnamed)) {
    message <- sprintf(
      "Arguments passed through `...` to %s must be named (e.g. `name = \"gqa\"`). Received %d unnamed argument(s) at position(s) %s.",
      where, length(unnamed), paste(unnamed, collapse = ", ")
    )
    stop(pygqa_condition(message, "pygqa_argument_error", call, argument = "..."))
  }
}

`%||%` <- function(x, y) if (is.null(x)) y else x

#' Methods for pygqa layer objects
#'
#' A layer made by [layer_group_query_attention()] is an R function that also
#' carries the Python layer. These methods let you use it like the Python
#' object: `gqa$get_weights()`, `gqa$set_weights(w)`, `gqa$trainable <- FALSE`,
#' `gqa$count_params()`. Python methods reached this way raise `pygqa_error`
#' conditions, like the layer itself. [reticulate::r_to_py()] returns the Python
#' layer, which is what happens when the layer is given to a Python function
#' such as `model$add()`.
#'
#' @param x A layer from [layer_group_query_attention()].
#' @param name The name of a Python attribute or method.
#' @param value The new value of the attribute.
#' @param convert Ignored; the Python layer keeps its own conversion setting.
#' @param pattern A regular expression, used by code completion.
#' @param ... Ignored.
#' @returns `$` and `[[` return the attribute (Python methods become R
#'   functions); `r_to_py()` returns the Python layer.
#' @name pygqa_layer
#' @keywords internal
NULL

#' @rdname pygqa_layer
#' @export
`$.pygqa_layer` <- function(x, name) {
  value <- py_layer_of(x)[[name]]
  if (inherits(value, "python.builtin.method")) {
    method <- value
    value <- function(...) with_python_errors(method(...), sys.call())
  }
  value
}

#' @rdname pygqa_layer
#' @export
`[[.pygqa_layer` <- function(x, name) `$.pygqa_layer`(x, name)

#' @rdname pygqa_layer
#' @export
`$<-.pygqa_layer` <- function(x, name, value) {
  with_python_errors(reticulate::py_set_attr(py_layer_of(x), name, value))
  x
}

#' @rdname pygqa_layer
#' @rawNamespace S3method(utils::.DollarNames, pygqa_layer)
.DollarNames.pygqa_layer <- function(x, pattern = "") {
  utils::.DollarNames(py_layer_of(x), pattern)
}

#' @rdname pygqa_layer
#' @exportS3Method reticulate::r_to_py
r_to_py.pygqa_layer <- function(x, convert = FALSE) py_layer_of(x)

#' @rdname pygqa_layer
#' @export
print.pygqa_layer <- function(x, ...) {
  py <- py_layer_of(x)
  config <- py$get_config()
  sizes <- sprintf(
    "head_dim = %s, num_query_heads = %s, num_key_value_heads = %s",
    config$head_dim, config$num_query_heads, config$num_key_value_heads
  )
  weights <- if (isTRUE(py$built)) sprintf("%d weights", length(py$weights)) else "not built yet"
  cat(sprintf("<pygqa_layer> %s '%s'\n  %s\n  dropout = %s, use_bias = %s, %s\n",
              class(py)[[1L]], py$name, sizes, config$dropout, config$use_bias, weights))
  invisible(x)
}
