#' Convert a multi-head attention checkpoint to grouped query attention
#'
#' @description
#' Builds a grouped query attention layer from a trained multi-head attention
#' layer with the recipe of Ainslie et al. (2023), "GQA: Training Generalized
#' Multi-Query Transformer Models from Multi-Head Checkpoints"
#' (\doi{10.48550/arXiv.2305.13245}): the query heads are split into
#' `num_key_value_heads` groups of neighbouring heads, and the key head of a
#' group is the mean of the key heads of its query heads (kernels and biases
#' alike); the same for values. The query and output projections are copied.
#' The paper then trains the converted model further for a few percent of the
#' original steps.
#'
#' With as many key/value heads as heads, the new layer computes exactly what
#' `layer` computes. Key/value heads that are already equal within each group
#' come through unchanged. `layer` may also be a grouped query attention layer
#' (from this package or Keras) with another number of key/value heads: the
#' key/value head each query head used is what gets averaged, so going to more
#' key/value heads repeats them (exactly).
#'
#' The dropout rate, bias setting, initializers, regularizers, constraints,
#' seed, dtype policy and trainable flag are carried over; the name is not
#' (give one with `name = "..."`). The source layer is not changed.
#'
#' @param layer A built `keras.layers.MultiHeadAttention` (from `keras`, or a
#'   keras3 layer) with equal `key_dim` and `value_dim`, or a built grouped
#'   query attention layer: a layer from [layer_group_query_attention()] or a
#'   `keras.layers.GroupQueryAttention`. Call a layer once on inputs to build
#'   it.
#' @param num_key_value_heads Number of key/value heads of the new layer, a
#'   whole number that divides the number of query heads.
#' @param ... Named constructor arguments of the new layer that replace the
#'   carried-over ones, such as `name` or `dropout`. The head sizes and
#'   `use_bias` follow from the weights and cannot be given.
#'
#' @returns A built layer from this package, an R function of class
#'   `pygqa_layer` (as returned by [layer_group_query_attention()]) holding the
#'   converted weights. Errors are `pygqa_error` conditions with the same
#'   message as in Python.
#'
#' @examplesIf pygqa_available()
#' mha <- keras$layers$MultiHeadAttention(num_heads = 8L, key_dim = 4L)
#' x <- array(runif(2 * 5 * 16), dim = c(2, 5, 16))
#' invisible(mha(x, x))
#' gqa <- from_multi_head_attention(mha, num_key_value_heads = 2)
#' gqa
#'
#' # With as many key/value heads as heads, the outputs are MHA's.
#' same <- from_multi_head_attention(mha, 8)
#' max(abs(as.array(same(x)) - as.array(mha(x, x))))
#' @seealso [from_keras()], [to_keras()], [layer_group_query_attention()].
#' @export
from_multi_head_attention <- function(layer, num_key_value_heads, ...) {
  call <- sys.call()
  if (missing(num_key_value_heads)) {
    stop(pygqa_condition(
      "from_multi_head_attention() is missing required argument(s): `num_key_value_heads`",
      "pygqa_argument_error", call, argument = "num_key_value_heads"
    ))
  }
  py_layer <- as_py_layer(layer, call)
  num_key_value_heads <- as_whole_number(num_key_value_heads, "num_key_value_heads", call = call)
  args <- constructor_overrides(list(...), "from_multi_head_attention()", call)
  converted <- with_python_errors(do.call(
    pygqa_module()$from_multi_head_attention,
    c(list(py_layer, num_key_value_heads), args)
  ), call)
  new_pygqa_layer(converted)
}

#' Convert between Keras's and this package's grouped query attention layer
#'
#' @description
#' `from_keras()` turns a `keras.layers.GroupQueryAttention` (from `keras` or
#' keras3's `layer_group_query_attention()`) into a layer from this package;
#' `to_keras()` goes the other way. Both layers store the same weights in the
#' same layout, so the conversion is exact: the same inputs give the same
#' outputs, except on query positions whose keys are all masked (this package
#' gives them zero attention; Keras's layer, depending on its code path,
#' uniform attention). Sizes, dropout, bias setting, initializers,
#' regularizers, constraints, seed, dtype policy, trainable flag and name are
#' carried over. Keras layers with a gate or a sliding window cannot be
#' converted.
#'
#' @param layer A built layer: a `keras.layers.GroupQueryAttention` for
#'   `from_keras()`, a layer from [layer_group_query_attention()] (or its
#'   Python layer) for `to_keras()`.
#' @param ... Named constructor arguments of the new layer that replace the
#'   carried-over ones, such as `name`.
#'
#' @returns `from_keras()`: an R function of class `pygqa_layer`, as from
#'   [layer_group_query_attention()]. `to_keras()`: the Python
#'   `keras.layers.GroupQueryAttention` object, called as
#'   `layer(query, value)`. Both are built and hold copies of the weights.
#'
#' @examplesIf pygqa_available()
#' gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
#'                                    num_key_value_heads = 2)
#' x <- array(runif(2 * 5 * 8), dim = c(2, 5, 8))
#' out <- as.array(gqa(x))
#' theirs <- to_keras(gqa)
#' max(abs(as.array(theirs(x, x)) - out))
#' back <- from_keras(theirs)
#' max(abs(as.array(back(x)) - out))
#' @seealso [from_multi_head_attention()].
#' @export
from_keras <- function(layer, ...) {
  call <- sys.call()
  py_layer <- as_py_layer(layer, call)
  args <- constructor_overrides(list(...), "from_keras()", call)
  new_pygqa_layer(with_python_errors(
    do.call(pygqa_module()$from_keras, c(list(py_layer), args)), call
  ))
}

#' @rdname from_keras
#' @export
to_keras <- function(layer, ...) {
  call <- sys.call()
  py_layer <- as_py_layer(layer, call)
  args <- constructor_overrides(list(...), "to_keras()", call)
  with_python_errors(do.call(pygqa_module()$to_keras, c(list(py_layer), args)), call)
}

# The Python layer behind `layer`: a pygqa_layer's own, or a Python object
# (a Keras or keras3 layer) as it is. Python decides whether it is the right
# kind of layer, so that R and Python users read the same message.
as_py_layer <- function(layer, call) {
  if (inherits(layer, "pygqa_layer")) {
    return(py_layer_of(layer))
  }
  if (inherits(layer, "python.builtin.object")) {
    return(layer)
  }
  stop_argument("layer", if (is.function(layer)) quote(`<function>`) else layer,
                "a built attention layer (a pygqa_layer or a Python Keras layer)", call)
}

# Constructor arguments in `...`: named, and whole numbers where Python needs
# integers (seed).
constructor_overrides <- function(args, where, call) {
  check_named(args, where, call)
  coerce_integer_arguments(args, call)
}
