#' Load a saved model that holds grouped query attention layers
#'
#' @description
#' Reads a `.keras` file written by `model$save()` (from R or Python), like
#' `keras$saving$load_model()`, but with clear errors: a missing file, a path
#' that is not a `.keras` file, a truncated or damaged file, and a file written
#' by another pygqa version are each reported by name. (Keras itself reports a
#' truncated file as "File not found", and damaged contents as low-level HDF5
#' or JSON errors.)
#'
#' Every layer saved by pygqa records the pygqa version that wrote it. While
#' pygqa is 0.x a minor release may change what is saved, so a file from
#' another major.minor version is refused, with both versions in the message;
#' files from before the version was recorded load as usual.
#'
#' @param filepath Path of a `.keras` file.
#' @param custom_objects Optional named list of further classes or functions
#'   the model needs, as for Keras's `load_model()`.
#' @param compile Whether to compile the model after loading, if it was saved
#'   compiled.
#' @param safe_mode Whether to refuse to load Python lambdas in the file.
#'
#' @returns The Keras model, with the saved weights (bit for bit).
#'   Errors are conditions of class `pygqa_error` that name `filepath`.
#'
#' @examplesIf pygqa_available()
#' model <- keras$Sequential(list(keras$Input(shape = c(5L, 8L))))
#' model |> layer_group_query_attention(head_dim = 4, num_query_heads = 4,
#'                                      num_key_value_heads = 2)
#' path <- tempfile(fileext = ".keras")
#' model$save(path)
#' loaded <- load_pygqa_model(path)
#' identical(loaded$get_weights(), model$get_weights())
#' @seealso [layer_group_query_attention()]; `keras.saving.load_model`.
#' @export
load_pygqa_model <- function(filepath, custom_objects = NULL, compile = TRUE, safe_mode = TRUE) {
  call <- sys.call()
  if (!is.character(filepath) || length(filepath) != 1L || is.na(filepath)) {
    stop_argument("filepath", filepath, "a single file path (a string)", call)
  }
  for (flag in c("compile", "safe_mode")) {
    value <- get(flag)
    if (!is.logical(value) || length(value) != 1L || is.na(value)) {
      stop_argument(flag, value, "TRUE or FALSE", call)
    }
  }
  with_python_errors(pygqa_module()$load_model(
    path.expand(filepath), custom_objects = custom_objects, compile = compile,
    safe_mode = safe_mode
  ), call)
}
