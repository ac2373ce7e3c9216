#' pygqa: grouped query attention for Keras 3 from R
#'
#' The package wraps the Python module `pygqa`. Its main function is
#' [layer_group_query_attention()]; [install_pygqa()] sets up Python, and the
#' exported [keras] handle gives models and inputs without the keras3 package.
#'
#' Python is not touched when the package loads. The first call that needs it
#' starts the Python that reticulate finds (`RETICULATE_PYTHON` first, then a
#' virtualenv named `r-pygqa`, then reticulate's usual search). The Keras
#' backend is read from the environment variable `KERAS_BACKEND`
#' (`"tensorflow"`, `"jax"` or `"torch"`) at that moment.
#'
#' @keywords internal
"_PACKAGE"

#' The Python `keras` module
#'
#' A handle on the Python `keras` module, imported on first use. It lets you
#' build models without the keras3 R package, for example
#' `keras$Input(shape = c(7L, 16L))` or `keras$Sequential()`. Shapes and other
#' integer arguments must be R integers here (`7L`), because this handle talks
#' to Python directly.
#'
#' If keras3 is attached as well, its `keras` object and this one are the same
#' Python module, so either works.
#'
#' @format A delay-loaded Python module (class `python.builtin.module`).
#' @examplesIf pygqa_available()
#' inputs <- keras$Input(shape = c(6L, 16L))
#' inputs$shape
#' @export
keras <- NULL

# Private state: the imported Python `pygqa` module, cached after the first use.
.pygqa <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  register_torch_blas_binding()  # before anything can import torch (torch-blas.R)
  keras <<- delay_load_module("keras")
  register_tensor_methods()
  register_layer_on_keras_import()
}

# Keras finds pygqa's layer class in a saved model only if the Python module
# `pygqa` has been imported (importing it registers the class). So that
# `library(pygqa)` is enough for every loader in the session (this package's
# `keras` handle, load_pygqa_model(), keras3's load_model(), a plain
# reticulate::import("keras")), `pygqa` is imported as soon as anything
# imports `keras`. reticulate runs "reticulate::<module>::load" hooks after a
# module's first import (the hook behind its py_register_load_hook(), which
# reticulate 1.41 does not export); if Keras is already imported, now.
register_layer_on_keras_import <- function() {
  if (python_module_imported("keras")) {
    import_pygqa_for_saved_models()
  } else {
    setHook("reticulate::keras::load", import_pygqa_for_saved_models)
  }
}

python_module_imported <- function(name) {
  reticulate::py_available(initialize = FALSE) &&
    tryCatch(name %in% names(reticulate::import("sys", convert = TRUE)$modules),
             error = function(e) FALSE)
}

# Runs inside reticulate's import hook: a failure must not break the import of
# Keras itself, so it becomes a warning that says what no longer works.
import_pygqa_for_saved_models <- function() {
  tryCatch(invisible(pygqa_module()), error = function(e) {
    warning(structure(class = c("pygqa_import_warning", "warning", "condition"), list(
      message = paste0(
        "Keras was imported, but the Python module 'pygqa' could not be: saved models ",
        "with pygqa layers will not load in this session.\n", conditionMessage(e)
      ),
      call = NULL
    )))
  })
}

# A proxy that imports `name` on first access. When Python is already running,
# reticulate imports at once; a failure must not stop the package from loading,
# so it is replaced by a stand-in that reports the problem on use.
delay_load_module <- function(name) {
  tryCatch(
    reticulate::import(name, delay_load = list(
      on_error = function(e) stop_python_missing(name, e)
    )),
    error = function(e) structure(list(module = name, error = e), class = "pygqa_missing_module")
  )
}

#' @export
`$.pygqa_missing_module` <- function(x, name) {
  stop_python_missing(unclass(x)$module, unclass(x)$error)
}

#' @export
print.pygqa_missing_module <- function(x, ...) {
  cat("<Python module '", unclass(x)$module, "': not available>\n", sep = "")
  invisible(x)
}

# The Python `pygqa` module, imported once. Every internal use goes through here,
# so a missing module gives the same explanation wherever it is first needed.
pygqa_module <- function() {
  if (is.null(.pygqa$module)) {
    module <- tryCatch(
      reticulate::import("pygqa"),
      error = function(e) stop_python_missing("pygqa", e)
    )
    # Without the real package, Python may import any folder named `pygqa` on
    # its path (this R package's own installed folder, say) as an empty
    # namespace package.
    if (!reticulate::py_has_attr(module, "GroupQueryAttention")) {
      # The path list is read unconverted: converted, a one-folder list comes
      # back to Python as a string, which list() would split into characters.
      where <- tryCatch({
        builtins <- reticulate::import_builtins(convert = FALSE)
        folders <- builtins$list(reticulate::py_get_attr(module, "__path__"))
        paste(unlist(reticulate::py_to_r(folders)), collapse = ", ")
      }, error = function(e) "an unknown place")
      stop_python_missing("pygqa", simpleError(sprintf(
        "the 'pygqa' found in %s is not the Python package: it has no GroupQueryAttention", where
      )))
    }
    check_python_version(module)  # R and Python pygqa must be the same version (version.R)
    .pygqa$module <- module
  }
  .pygqa$module
}

#' Is the Python side of pygqa usable?
#'
#' Checks that Python can be started and that the Python module `pygqa` (and
#' with it Keras 3) imports. Use it to guard examples, vignette chunks and
#' tests. It starts Python if it is not running yet, and never raises an error.
#'
#' @returns `TRUE` or `FALSE`.
#' @seealso [install_pygqa()] when it returns `FALSE`.
#' @examples
#' pygqa_available()
#' @export
pygqa_available <- function() {
  tryCatch({
    pygqa_module()
    TRUE
  }, error = function(e) FALSE)
}

#' Seed every random number generator in one call
#'
#' Sets R's seed and, through `keras.utils.set_random_seed()`, the seeds of
#' Python's `random`, NumPy and the active Keras backend. Two sessions (or an R
#' and a Python session) that call it with the same seed and use the same
#' backend create the same initial weights.
#'
#' keras3 and tensorflow export functions with the same name; they do the same
#' job, so whichever is attached last can be used.
#'
#' @param seed A whole number, e.g. `42` or `42L`.
#' @returns `NULL`, invisibly.
#' @examplesIf pygqa_available()
#' set_random_seed(1)
#' a <- layer_group_query_attention(head_dim = 2, num_query_heads = 2,
#'                                  num_key_value_heads = 1)
#' @export
set_random_seed <- function(seed) {
  seed <- as_whole_number(seed, "seed", min = 0L)
  set.seed(seed)
  with_python_errors(keras$utils$set_random_seed(seed))
  invisible(NULL)
}
