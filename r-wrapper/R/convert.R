# Conversions between R values and what the Python layer expects.

# R's `4` is a double and would reach Python as 4.0, which Keras cannot use as
# a size. Whole doubles and integers become R integers; anything else is an
# argument error raised here, before Python is involved.
as_whole_number <- function(value, argument, min = 1L, call = sys.call(-1L)) {
  expected <- if (min > 0L) "a positive integer" else "NULL or a non-negative integer"
  ok <- is.numeric(value) && !is.object(value) && length(value) == 1L &&
    !is.na(value) && is.finite(value) && value == trunc(value) &&
    value >= min && value <= .Machine$integer.max
  if (!ok) {
    stop_argument(argument, value, expected, call)
  }
  as.integer(value)
}

# The constructor arguments that are sizes or seeds and so must be integers.
integer_arguments <- c(head_dim = 1L, num_query_heads = 1L, num_key_value_heads = 1L, seed = 0L)

coerce_integer_arguments <- function(args, call) {
  for (name in intersect(names(args), names(integer_arguments))) {
    if (name == "seed" && is.null(args[[name]])) next
    args[[name]] <- as_whole_number(args[[name]], name, integer_arguments[[name]], call)
  }
  args
}

# R arrays become float32 NumPy arrays (C order, same element at the same
# index), so the layer does not build float64 copies on every backend. Python
# objects (tensors, NumPy arrays, Keras inputs) pass through untouched.
as_py_input <- function(x) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.numeric(x) || is.logical(x)) {
    return(reticulate::np_array(x, dtype = "float32", order = "C"))
  }
  x
}

# Masks are boolean in Keras; an R logical array (or 0/1 numbers) becomes a
# NumPy bool array. NA has no meaning in a mask, so it is refused.
as_py_mask <- function(x, argument, call = NULL) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if ((is.logical(x) || is.numeric(x)) && !anyNA(x)) {
    return(reticulate::np_array(x != 0, dtype = "bool", order = "C"))
  }
  stop_argument(argument, x, "a logical array without NA, or a tensor", call)
}

# Backend tensors in their Python class names, as reticulate reports them. The
# names differ between library versions, so the known spellings are all listed.
tensor_classes <- c(
  "tensorflow.python.framework.ops.EagerTensor",
  "jaxlib._jax.ArrayImpl",
  "jaxlib.xla_extension.ArrayImpl",
  "jax.Array",
  "jax.jaxlib._jax.Array",
  "torch.Tensor",
  "keras.src.backend.common.variables.Variable"
)

# Converts any backend tensor or Keras variable to an R array through
# `keras.ops.convert_to_numpy`, which knows every backend (it detaches torch
# tensors and copies them to the CPU). NumPy then converts with R's indices.
tensor_to_r <- function(x, ...) {
  numpy <- with_python_errors(keras$ops$convert_to_numpy(x))
  if (inherits(numpy, "python.builtin.object") &&
      reticulate::py_to_r(numpy$dtype$name) %in% c("bfloat16", "float16")) {
    # Half-precision outputs (mixed precision policies): R has no such type,
    # and reticulate cannot convert bfloat16 at all; float32 holds them exactly.
    numpy <- numpy$astype("float32")
  }
  if (inherits(numpy, "python.builtin.object")) reticulate::py_to_r(numpy) else numpy
}

tensor_dim <- function(x) {
  shape <- with_python_errors(reticulate::import_builtins()$tuple(x$shape))
  vapply(shape, function(d) if (is.null(d)) NA_integer_ else as.integer(d), integer(1L))
}

# Registered at load time, and only where nothing else (keras3, tensorflow)
# already handles the class, so attaching several packages stays quiet.
register_tensor_methods <- function() {
  methods <- list(as.array = tensor_to_r, dim = tensor_dim)
  for (generic in names(methods)) {
    for (cls in tensor_classes) {
      if (is.null(utils::getS3method(generic, cls, optional = TRUE))) {
        registerS3method(generic, cls, methods[[generic]], envir = asNamespace("base"))
      }
    }
  }
}
