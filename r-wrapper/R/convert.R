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

# The constructor arguments that are sizes or seeds and so must be integers
# (the value is the smallest allowed); the optional ones may be NULL.
integer_arguments <- c(head_dim = 1L, num_query_heads = 1L, num_key_value_heads = 1L, seed = 0L,
                       sliding_window = 1L)
optional_integer_arguments <- c("seed", "sliding_window")

# What each constructor argument expects, for the NA error below.
expected_values <- c(
  dropout = "a number in [0, 1)", use_bias = "TRUE or FALSE",
  kernel_initializer = "an initializer name or object",
  bias_initializer = "an initializer name or object",
  kernel_regularizer = "NULL or a regularizer", bias_regularizer = "NULL or a regularizer",
  activity_regularizer = "NULL or a regularizer", kernel_constraint = "NULL or a constraint",
  bias_constraint = "NULL or a constraint", name = "a string", dtype = "a dtype name or policy",
  trainable = "TRUE or FALSE", autocast = "TRUE or FALSE", use_gate = "TRUE or FALSE",
  flash_attention = "NULL, TRUE or FALSE"
)

# NA has no meaning for any argument, and reticulate would turn a logical NA
# into Python's True (use_bias = NA would silently mean TRUE): refused in R.
check_no_na <- function(args, call) {
  for (name in names(args)) {
    value <- args[[name]]
    if (is.atomic(value) && !is.object(value) && length(value) > 0L && anyNA(value)) {
      expected <- if (name %in% names(expected_values)) expected_values[[name]] else "a value"
      stop_argument(name, value, paste(expected, "(NA is not allowed)"), call)
    }
  }
  invisible(args)
}

coerce_integer_arguments <- function(args, call) {
  check_no_na(args[setdiff(names(args), names(integer_arguments))], call)
  for (name in intersect(names(args), names(integer_arguments))) {
    if (name %in% optional_integer_arguments && is.null(args[[name]])) next
    args[[name]] <- as_whole_number(args[[name]], name, integer_arguments[[name]], call)
  }
  args
}

# R arrays become float32 NumPy arrays (C order, same element at the same
# index), so the layer does not build float64 copies on every backend. Python
# objects (tensors, NumPy arrays, Keras inputs) pass through untouched.
# NA is refused: it would become NaN and spread to every output it touches.
# Characters are refused here, with R's spelling of the value.
as_py_input <- function(x, argument = input_name(substitute(x)), call = NULL) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.numeric(x) || is.logical(x)) {
    if (anyNA(x)) {
      stop_argument(argument, x, "a numeric array without NA (NA would become NaN)", call)
    }
    return(reticulate::np_array(x, dtype = "float32", order = "C"))
  }
  if (is.character(x) || is.factor(x)) {
    stop_argument(argument, x, "a numeric array or a tensor", call)
  }
  x
}

# The argument's name for messages: `query` from as_py_input(query), `cache`
# from as_py_input(extra$cache).
input_name <- function(expr) {
  if (is.symbol(expr)) return(as.character(expr))
  if (is.call(expr) && identical(expr[[1L]], as.name("$"))) return(as.character(expr[[3L]]))
  "input"
}

# Masks are boolean in Keras; an R logical array (or 0/1 numbers) becomes a
# NumPy bool array. NA has no meaning in a mask, so it is refused, and so are
# numbers other than 0 and 1: an additive mask (0 = keep, -Inf = drop) read
# as "nonzero = attend" would be inverted without a word.
as_py_mask <- function(x, argument, call = NULL) {
  if (is.null(x) || inherits(x, "python.builtin.object")) {
    return(x)
  }
  if (is.numeric(x) && !anyNA(x) && !all(x == 0 | x == 1)) {
    stop_argument(argument, x, paste(
      "a logical array, or numbers 0 and 1 only (for an additive mask of 0 and -Inf,",
      "pass `mask == 0`)"), call)
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
