#' Grouped query attention layer
#'
#' @description
#' Creates a grouped query attention (GQA) layer, the attention scheme of
#' Ainslie et al. (2023), "GQA: Training Generalized Multi-Query Transformer
#' Models from Multi-Head Checkpoints" (\doi{10.48550/arXiv.2305.13245}).
#' The `num_query_heads` query heads are split into `num_key_value_heads`
#' equal groups, and every query head in a group attends with the same
#' key/value head. With 8 query heads and 2 key/value heads, query heads 1-4
#' share key/value head 1 and query heads 5-8 share key/value head 2. One
#' key/value head gives multi-query attention; as many key/value heads as query
#' heads gives ordinary multi-head attention. Fewer key/value heads means a
#' smaller key/value cache when decoding, at close to multi-head quality.
#'
#' The layer projects the query to `num_query_heads` heads and the key and
#' value to `num_key_value_heads` heads of size `head_dim`, scores each query
#' position against each key position (scaled by `1 / sqrt(head_dim)`),
#' normalises the scores with a softmax, averages the value heads with those
#' weights, and projects the concatenated heads back to the query's last
#' dimension.
#'
#' Unlike the function of the same name in keras3, sizes given as R doubles
#' (`head_dim = 4`) work, and every `object` form (sequential model, tensor, R
#' array, list of inputs) does too. When both packages are attached, the one
#' attached last masks the other; write `pygqa::layer_group_query_attention()`
#' to be sure which one runs.
#'
#' # Call Arguments
#' The returned layer is an R function, called as
#' `layer(query, value = NULL, key = NULL, ...)`:
#' - `query`: query input of shape `(batch, T, dim)`; a tensor, a Keras input
#'   or an R array (converted to float32 once).
#' - `value`: value input of shape `(batch, S, dim)`. `NULL` means
#'   self-attention (`value` is `query`).
#' - `key`: key input of shape `(batch, S, dim)`; `NULL` uses `value`.
#' - `query_mask`: logical array of shape `(batch, T)`; `FALSE` marks padded
#'   query positions.
#' - `value_mask`: logical array of shape `(batch, S)`; `FALSE` marks padded
#'   value positions.
#' - `key_mask`: logical array of shape `(batch, S)`, like `value_mask`, for
#'   the key.
#' - `attention_mask`: logical array of shape `(batch, T, S)`; `TRUE` where a
#'   query position may attend to a key position. All masks given are combined.
#' - `return_attention_scores`: if `TRUE`, return the attention probabilities
#'   too, as a list with elements `attention_output` and `attention_scores`.
#' - `training`: `TRUE` applies dropout, `FALSE` or `NULL` (inference) does
#'   not.
#' - `use_causal_mask`: if `TRUE`, position `t` only attends to positions up
#'   to `t` (a lower-triangular mask, aligned at the first position).
#' - `cache`: a key/value cache for decoding one step at a time, of shape
#'   `(batch, 2, max_length, num_key_value_heads, head_dim)`; make an empty one
#'   with `layer$empty_cache(batch_size, max_length)`. The call then returns a
#'   list with `attention_output` and the updated `cache` (and
#'   `attention_scores` between them when requested). Masks on keys then have
#'   length `max_length`.
#' - `cache_update_index`: how many positions the cache already holds (`0` for
#'   the first call: a count, so the same number as in Python). The new keys
#'   and values are written after them, later positions are masked, and with
#'   `use_causal_mask = TRUE` query row `r` is position
#'   `cache_update_index + r`. `NULL` only reads the cache.
#' - `positions`: with `rope_max_wavelength`, the positions of the query rows
#'   for the rotary embedding, whole numbers counted from 0 as in Python: an
#'   integer vector of length `T`, or a `batch` x `T` matrix (one row per
#'   sequence, e.g. `cumsum(padding) - 1` for left-padded prompts). Keys of
#'   the query's length take the same positions. By default `0:(T - 1)`, and
#'   `cache_update_index + 0:(T - 1)` with a cache; cached keys are rotated
#'   once, when written.
#'
#' Further Python call arguments may be given by name in `...`. Outputs are
#' backend tensors; `as.array()` and `dim()` work on them with every backend.
#'
#' @param object What to compose the layer with. Missing or `NULL`: return the
#'   layer. A sequential model: add the layer to it. A tensor or R array: call
#'   the layer on it (self-attention). A list: call the layer with the list's
#'   elements as arguments, by position (`list(query, value, key)`) or by name
#'   (`list(query = q, value = v, attention_mask = m)`).
#' @param head_dim Size of every attention head, for queries, keys and
#'   values alike. A whole number: `4` and `4L` both work.
#' @param num_query_heads Number of query heads, a whole number.
#' @param num_key_value_heads Number of key/value heads (groups), a whole number
#'   that divides `num_query_heads`.
#' @param dropout Probability of dropping an attention weight during training,
#'   a number in `[0, 1)`.
#' @param use_bias Whether the query, key, value and output projections add a
#'   bias vector.
#' @param kernel_initializer How the projection kernels start: an initializer
#'   name such as `"glorot_uniform"`, or a Keras initializer object.
#' @param bias_initializer How the projection biases start: a name such as
#'   `"zeros"`, or a Keras initializer object.
#' @param kernel_regularizer Optional penalty on the projection kernels (a Keras
#'   regularizer or its name).
#' @param bias_regularizer Optional penalty on the projection biases.
#' @param activity_regularizer Optional penalty on the layer's output.
#' @param kernel_constraint Optional constraint applied to the projection
#'   kernels after each update.
#' @param bias_constraint Optional constraint applied to the projection biases
#'   after each update.
#' @param ... Further constructor arguments for the Python layer, all named,
#'   such as `name`, `dtype`, `trainable`, `seed` (the dropout seed, a whole
#'   number) or `flash_attention`, which attention path runs: `NULL` (the
#'   default) chooses the fastest path for each call; `TRUE` requires the
#'   backend's fused, memory-efficient kernel and raises an error for a call
#'   that cannot use it (attention scores requested, dropout in training);
#'   `FALSE` always computes the explicit softmax path. All paths give the same
#'   numbers; the setting is kept in the layer's config. `sliding_window`, a
#'   whole number: position `t` attends only to positions `s` with
#'   `abs(t - s) < sliding_window` (with `use_causal_mask = TRUE`, the causal
#'   sliding window of Mistral or Phi-3). `use_gate = TRUE`: gated attention
#'   (arXiv 2505.06708), a sigmoid `gate` projection of the query that scales
#'   each head's output before the output projection. keras3 code that passes
#'   any of these works unchanged. The options of decoder language models
#'   (Llama, Mistral, Qwen 3, Gemma 3), applied to the projected heads:
#'   `rope_max_wavelength` (`NULL`, off; or a positive number such as 10000):
#'   rotary position embeddings on query and key, the first half of each
#'   head's features turning with the second half, as in keras-hub
#'   (`head_dim` must be even); `rope_scaling_factor` (1): positions are
#'   divided by it; `use_query_key_norm = TRUE`: an RMS norm of each query and
#'   key head with learned scales (`query_norm/scale`, `key_norm/scale`, last
#'   in `get_weights()`), before the rotation; `layer_norm_epsilon` (1e-6):
#'   that norm's epsilon; `logit_soft_cap` (`NULL` or a positive number):
#'   logits become `cap * tanh(logits / cap)` before the softmax (not with
#'   `flash_attention = TRUE`); `attention_scale` (`NULL`, meaning
#'   `1 / sqrt(head_dim)`): the factor of the logits;
#'   `rope_frequency_adjustment`: Llama 3.1's slower low frequencies, a named
#'   list of `factor`, `low_freq_factor`, `high_freq_factor` and
#'   `original_max_length`.
#'
#' @returns
#' Depends on `object`:
#' - missing or `NULL`: the layer, an R function of class `pygqa_layer` (see
#'   *Call Arguments*); `$` reaches the Python layer, e.g. `gqa$get_weights()`.
#' - a sequential model: the same model with the layer added, invisibly, so
#'   that it can be piped on.
#' - a tensor, an R array or a list of inputs: the layer's output, a tensor of
#'   shape `(batch, T, dim)`; with `return_attention_scores = TRUE` a list with
#'   `attention_output` and `attention_scores` (shape
#'   `(batch, num_query_heads, T, S)`).
#'
#' Errors are R conditions of class `pygqa_error`: `pygqa_argument_error` for
#' bad R arguments (caught before Python runs), and Python's own message for
#' errors raised in Python.
#'
#' @examplesIf pygqa_available()
#' # A layer from plain R numbers.
#' gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
#'                                    num_key_value_heads = 2)
#' x <- array(runif(2 * 5 * 8), dim = c(2, 5, 8))
#' dim(as.array(gqa(x)))
#'
#' # Cross-attention with a causal mask and the attention scores.
#' v <- array(runif(2 * 5 * 8), dim = c(2, 5, 8))
#' res <- gqa(x, v, use_causal_mask = TRUE, return_attention_scores = TRUE)
#' dim(as.array(res$attention_scores))
#'
#' # Decoding one position at a time with a key/value cache.
#' cache <- gqa$empty_cache(2, 5)
#' for (i in 1:5) {
#'   step <- gqa(x[, i, , drop = FALSE], cache = cache, cache_update_index = i - 1,
#'               use_causal_mask = TRUE)
#'   cache <- step$cache
#' }
#' dim(as.array(step$attention_output))
#'
#' # In a sequential model.
#' model <- keras$Sequential(list(keras$Input(shape = c(5L, 8L))))
#' model |> layer_group_query_attention(head_dim = 4, num_query_heads = 4,
#'                                      num_key_value_heads = 1)
#' model$output_shape
#'
#' # Called on a list of inputs at once.
#' out <- layer_group_query_attention(list(query = x, value = v),
#'                                    head_dim = 2, num_query_heads = 2,
#'                                    num_key_value_heads = 2)
#' dim(out)
#' @seealso [install_pygqa()], [keras], [set_random_seed()]; Keras's
#'   `keras.layers.GroupQueryAttention`
#'   (<https://keras.io/api/layers/attention_layers/group_query_attention/>),
#'   which this layer reproduces given the same weights.
#' @export
layer_group_query_attention <- function(object, head_dim, num_query_heads, num_key_value_heads,
                                        dropout = 0, use_bias = TRUE,
                                        kernel_initializer = "glorot_uniform",
                                        bias_initializer = "zeros", kernel_regularizer = NULL,
                                        bias_regularizer = NULL, activity_regularizer = NULL,
                                        kernel_constraint = NULL, bias_constraint = NULL, ...) {
  # A pipe's left-hand side runs first, as it reads.
  object <- if (missing(object)) NULL else object
  call <- sys.call()
  args <- supplied_arguments(match.call(expand.dots = FALSE), environment(), call)
  extra <- list(...)
  check_named(extra, "layer_group_query_attention()", call)
  args <- coerce_integer_arguments(c(args, extra), call)
  py_layer <- with_python_errors(do.call(pygqa_module()$GroupQueryAttention, args), call)
  compose_layer(object, new_pygqa_layer(py_layer), call)
}

# The constructor arguments the caller wrote, evaluated; the others are left
# out so that Python's defaults apply.
supplied_arguments <- function(matched, env, call) {
  required <- c("head_dim", "num_query_heads", "num_key_value_heads")
  missing <- setdiff(required, names(matched))
  if (length(missing)) {
    message <- paste0(
      "layer_group_query_attention() is missing required argument(s): ",
      paste0("`", missing, "`", collapse = ", ")
    )
    stop(pygqa_condition(message, "pygqa_argument_error", call, argument = missing[[1L]]))
  }
  names <- setdiff(names(matched)[-1L], c("object", "..."))
  mget(names, envir = env)
}

# What to do with the layer, by the kind of `object` (see @returns).
compose_layer <- function(object, layer, call) {
  if (is.null(object)) {
    return(layer)
  }
  if (is_sequential(object)) {
    with_python_errors(object$add(py_layer_of(layer)), call)
    return(invisible(object))
  }
  if (inherits(object, c("python.builtin.list", "python.builtin.tuple"))) {
    object <- reticulate::py_to_r(object)
  }
  if (inherits(object, c("python.builtin.dict", "keras.src.models.model.Model"))) {
    # A Python dict of call arguments, or a model that is not sequential:
    # Python's own composition rule (and its error message) applies.
    return(with_python_errors(pygqa_module()$compose$compose(py_layer_of(layer), object), call))
  }
  inputs <- check_object(object, call)
  # Through call_layer() so that errors name the user's call, not the closure.
  do.call(call_layer, c(list(py_layer_of(layer)), inputs, list(.call = call)), quote = TRUE)
}

# The call arguments `object` stands for, as a list; the same checks, and the
# same messages, as Python's pygqa.compose.compose().
check_object <- function(object, call) {
  if (is.list(object) && !is.data.frame(object)) {
    positional <- if (is.null(names(object))) length(object) else sum(!nzchar(names(object)))
    if (length(object) == 0L || positional > 3L) {
      stop(pygqa_condition(sprintf(paste0(
        "Received an invalid value for `object`: expected a list of 1 to 3 tensors ",
        "(query, value, key), or a named list of call arguments. Received: a list of length %d"),
        length(object)), "pygqa_argument_error", call, argument = "object", value = object))
    }
    return(object)
  }
  if ((is.numeric(object) || is.logical(object)) && !is.object(object) && is.null(dim(object))) {
    # A plain vector is never an input (inputs have rank 3); most often it is a
    # value meant for another argument that R matched to `object` by position.
    stop(pygqa_condition(sprintf(paste0(
      "Received an invalid value for `object`: expected NULL, a sequential model, a tensor or ",
      "array of rank 3, or a list of inputs. Received: object=%s, an R vector without dim. ",
      "R matches an unnamed argument to `object`, the first formal: name it if it was meant ",
      "for another argument (e.g. `seed = %s`)."), describe_value(object),
      describe_value(object)), "pygqa_argument_error", call, argument = "object", value = object))
  }
  if ((is.numeric(object) || is.logical(object)) && !is.object(object) ||
      inherits(object, "python.builtin.object")) {
    return(list(object))
  }
  stop(pygqa_condition(paste0(
    "Received an invalid value for `object`: expected NULL, a sequential model, a tensor or ",
    "array, a list (query, value[, key]) or a named list of call arguments. Received: object ",
    "of class ", paste(class(object), collapse = "/")),
    "pygqa_argument_error", call, argument = "object", value = object))
}

# keras3's sequential models and Python's are the same Python class; a
# subclass still lists it among its classes.
is_sequential <- function(object) {
  inherits(object, "python.builtin.object") && any(grepl("\\.Sequential$", class(object)))
}
