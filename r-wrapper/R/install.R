#' Install the Python side of pygqa
#'
#' Creates a Python virtual environment (by default `r-pygqa`, the name
#' reticulate looks for when pygqa first needs Python) and installs the `pygqa`
#' Python package into it with pip, together with Keras 3 and one backend.
#'
#' After installing, restart R. reticulate then finds the environment by its
#' name, unless `RETICULATE_PYTHON` or an earlier `reticulate::use_python()`
#' points elsewhere; with another `envname`, call
#' `reticulate::use_virtualenv(envname)` before the first use.
#'
#' @param package What pip installs: a requirement such as `"pygqa"` or
#'   `"pygqa==0.1.0"` from a package index, or the path of a local copy of the
#'   pygqa repository, which is installed in editable mode (`pip install -e`).
#' @param backend The Keras backend to install with it: `"tensorflow"`,
#'   `"jax"` or `"torch"` (the matching pip extra of pygqa). Choose the backend
#'   at run time with the environment variable `KERAS_BACKEND`.
#' @param envname Name (or path) of the virtual environment.
#' @param python The Python used to create the environment (3.10 or newer).
#'   `NULL` lets reticulate choose one.
#' @param new_env If `TRUE`, an existing environment of that name is removed
#'   first.
#' @returns The path of the environment's Python, invisibly.
#' @seealso [pygqa_available()] to check the result.
#' @examples
#' \dontrun{
#' # From a local clone of the repository, with the JAX backend:
#' install_pygqa("~/src/pygqa", backend = "jax")
#' }
#' @export
install_pygqa <- function(package = "pygqa", backend = c("tensorflow", "jax", "torch"),
                          envname = "r-pygqa", python = NULL, new_env = FALSE) {
  backend <- match.arg(backend)
  spec <- pip_requirement(package, backend)
  if (isTRUE(new_env) && reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_remove(envname, confirm = FALSE)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    create <- list(envname = envname, packages = NULL)
    if (!is.null(python)) create$python <- python
    do.call(reticulate::virtualenv_create, create)
  }
  reticulate::virtualenv_install(envname, packages = spec$requirement,
                                 pip_options = spec$pip_options)
  python_path <- reticulate::virtualenv_python(envname)
  message(sprintf(
    "Installed %s into %s.\nRestart R so that reticulate starts this Python.",
    spec$requirement, python_path
  ))
  invisible(python_path)
}

# pip's view of `package`: a local directory is installed editable with the
# backend extra; an index requirement gets the extra after its name.
pip_requirement <- function(package, backend) {
  if (!is.character(package) || length(package) != 1L || is.na(package) || !nzchar(package)) {
    stop_argument("package", package, "a pip requirement or a directory path")
  }
  if (dir.exists(package)) {
    path <- normalizePath(package, winslash = "/")
    return(list(requirement = sprintf("%s[%s]", path, backend), pip_options = "-e"))
  }
  if (grepl("[", package, fixed = TRUE)) {
    return(list(requirement = package, pip_options = character()))  # extras given already
  }
  name <- sub("^([A-Za-z0-9_.-]+).*$", "\\1", package)
  rest <- substring(package, nchar(name) + 1L)
  list(requirement = sprintf("%s[%s]%s", name, backend, rest), pip_options = character())
}
