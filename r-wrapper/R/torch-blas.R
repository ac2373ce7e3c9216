# torch's matrix products in an R process.
#
# libtorch_cpu exports the BLAS symbol `sgemm_` and calls it for its own 2-D
# float32 products. In a Python process that call reaches torch's own GEMM. In
# an R process R's BLAS (Debian's reference libblas.so.3) is loaded before
# Python starts, and the dynamic linker answers `sgemm_` with R's: torch's
# products then round differently from the same products in Python (1.9e-5 on
# a 128x333 by 333x77 product) and run slower, so a model trained from R
# drifts away from the same model trained from Python. Importing torch with
# RTLD_DEEPBIND makes libtorch look up its symbols in itself first, so torch
# computes in R exactly as it does in Python.
#
# This has to happen before anything imports torch (Keras does, when its
# backend is torch), so it runs as soon as Python starts: from reticulate's
# "reticulate.onPyInit" hook, or at once when the package is loaded into a
# running Python. It does nothing when the Keras backend is not torch, when
# torch is not installed, or when torch is already imported (as inside rpy2,
# where R runs in a Python process and this problem does not arise).

register_torch_blas_binding <- function() {
  if (reticulate::py_available(initialize = FALSE)) {
    bind_torch_blas()
  } else {
    setHook("reticulate.onPyInit", bind_torch_blas)
  }
}

# Imports torch with its own symbols bound first. Returns TRUE if it did.
# Never raises: a failure here must not stop Python from starting, and the
# later import of Keras reports any real problem with torch.
bind_torch_blas <- function() {
  invisible(tryCatch({
    if (!identical(requested_keras_backend(), "torch") ||
        python_module_imported("torch") ||
        !python_module_installed("torch")) {
      return(invisible(FALSE))
    }
    sys <- reticulate::import("sys", convert = TRUE)
    os <- reticulate::import("os", convert = TRUE)
    flags <- sys$getdlopenflags()
    sys$setdlopenflags(bitwOr(os$RTLD_NOW, os$RTLD_DEEPBIND))
    on.exit(sys$setdlopenflags(flags), add = TRUE)
    reticulate::import("torch")
    TRUE
  }, error = function(e) FALSE))
}

# Whether `name` can be imported, without importing it (reticulate's
# py_module_available() imports the module to find out).
python_module_installed <- function(name) {
  util <- reticulate::import("importlib.util", convert = TRUE)
  !is.null(util$find_spec(name))
}

# The backend Keras will choose when it is imported: KERAS_BACKEND, else the
# "backend" field of keras.json in KERAS_HOME (default ~/.keras), else Keras's
# default, TensorFlow.
requested_keras_backend <- function() {
  backend <- Sys.getenv("KERAS_BACKEND")
  if (nzchar(backend)) {
    return(backend)
  }
  home <- Sys.getenv("KERAS_HOME", file.path(path.expand("~"), ".keras"))
  config <- file.path(home, "keras.json")
  if (file.exists(config)) {
    text <- paste(readLines(config, warn = FALSE), collapse = " ")
    found <- regmatches(text, regexec('"backend"[[:space:]]*:[[:space:]]*"([^"]+)"', text))[[1]]
    if (length(found) == 2L) {
      return(found[[2L]])
    }
  }
  "tensorflow"
}
