#' Install the Python side of pygqa
#'
#' Creates a Python virtual environment (by default `r-pygqa`, the name
#' reticulate looks for when pygqa first needs Python) and installs the `pygqa`
#' Python package into it with pip, together with Keras 3 and one backend.
#' The Python package must have the same version as this R package; by
#' default the matching version is installed from the package index, and a
#' local copy (repository, wheel or source archive) of another version is
#' refused before anything is installed.
#'
#' Each step reports what it does, and the last message says what to do next:
#' restart R, and point reticulate at the environment when it is not the
#' default `r-pygqa` (`RETICULATE_PYTHON` or `reticulate::use_virtualenv()`
#' before the first use).
#'
#' @param package What pip installs: `"pygqa"` (the version of this R
#'   package, from the package index), a requirement with that version such as
#'   `"pygqa==0.1.0"`, the path of a local copy of the pygqa repository
#'   (installed in editable mode, `pip install -e`), or the path of a wheel
#'   (`.whl`) or source archive (`.tar.gz`) made with `python -m build`.
#' @param backend The Keras backend to install with it: `"tensorflow"`
#'   (`tensorflow-cpu`), `"jax"` or `"torch"` (the matching pip extra of pygqa).
#'   Choose the backend at run time with the environment variable
#'   `KERAS_BACKEND`.
#' @param envname Name of the virtual environment (kept in reticulate's folder
#'   of environments), or a path.
#' @param python The Python used to create the environment (3.10 or newer).
#'   `NULL` lets reticulate find one.
#' @param new_env If `TRUE`, an existing environment of that name is removed
#'   first.
#' @returns The path of the environment's Python, invisibly.
#' @seealso [pygqa_available()] to check the result.
#' @examples
#' \dontrun{
#' # The version matching this R package, from the package index:
#' install_pygqa()
#' # From a local clone of the repository, with the JAX backend:
#' install_pygqa("~/src/pygqa", backend = "jax")
#' # From a wheel built with `python -m build`:
#' install_pygqa("~/src/pygqa/dist/pygqa-0.1.0-py3-none-any.whl")
#' }
#' @export
install_pygqa <- function(package = "pygqa", backend = c("tensorflow", "jax", "torch"),
                          envname = "r-pygqa", python = NULL, new_env = FALSE) {
  backend <- match.arg(backend)
  if (!is.character(envname) || length(envname) != 1L || is.na(envname) || !nzchar(envname)) {
    stop_argument("envname", envname, "the name or path of a virtual environment")
  }
  spec <- pip_requirement(package, backend, r_package_version())
  if (isTRUE(new_env) && reticulate::virtualenv_exists(envname)) {
    message("Removing the virtual environment ", envname, " (new_env = TRUE).")
    reticulate::virtualenv_remove(envname, confirm = FALSE)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    starter <- python_for_virtualenv(python)
    message("Creating the virtual environment ", envname, " with ", starter, ".")
    tryCatch(
      reticulate::virtualenv_create(envname, python = starter, packages = NULL),
      error = function(e) stop_install(paste0(
        "Could not create the virtual environment ", envname, " with ", starter, ": ",
        one_line(conditionMessage(e)), "\nOn Debian or Ubuntu, `sudo apt install python3-venv` ",
        "adds what `python3 -m venv` needs; or pass another `python`."
      ))
    )
  }
  message("Installing ", spec$requirement, " with pip (Keras 3 and the ", backend,
          " backend come with it). This can take a few minutes.")
  tryCatch(
    reticulate::virtualenv_install(envname, packages = spec$requirement,
                                   pip_options = spec$pip_options),
    error = function(e) stop_install(paste0(
      "pip could not install ", spec$requirement, " into ", envname, ": ",
      one_line(conditionMessage(e)), "\npip's output above says why; check the network ",
      "connection or the package index, then run install_pygqa() again."
    ))
  )
  python_path <- reticulate::virtualenv_python(envname)
  installed <- installed_versions(python_path, backend)
  check_versions(r_package_version(), installed[["pygqa"]], paste("Python", python_path))
  message(next_steps(envname, python_path, backend, installed))
  invisible(python_path)
}

# pip's view of `package`: a repository is installed editable with the backend
# extra, a wheel or source archive with the extra, an index requirement gets
# the extra after its name. With `wanted` (the R package's version), a local
# copy or pinned requirement of another version is refused, and a bare name
# gets that version.
pip_requirement <- function(package, backend, wanted = NULL) {
  if (!is.character(package) || length(package) != 1L || is.na(package) || !nzchar(package)) {
    stop_argument("package", package, "a pip requirement or the path of a directory or a file")
  }
  if (dir.exists(package)) {
    path <- normalizePath(package, winslash = "/")
    if (!is.null(wanted)) {
      check_versions(wanted, repository_version(path), sprintf("the repository %s", path))
    }
    return(list(requirement = sprintf("%s[%s]", path, backend), pip_options = "-e"))
  }
  if (grepl("[.](whl|tar[.]gz)$", package)) {
    if (!file.exists(package)) {
      stop_argument("package", package, "an existing wheel (.whl) or source archive (.tar.gz)")
    }
    path <- normalizePath(package, winslash = "/")
    version <- sub("^pygqa-([^-]+?)(-.*[.]whl|[.]tar[.]gz)$", "\\1", basename(path), perl = TRUE)
    if (identical(version, basename(path))) {
      stop_argument("package", package, "a pygqa wheel or source archive, named pygqa-<version>...")
    }
    if (!is.null(wanted)) check_versions(wanted, version, sprintf("the file %s", path))
    return(list(requirement = sprintf("%s[%s]", path, backend), pip_options = character()))
  }
  if (grepl("[/\\\\]", package)) {
    stop_argument("package", package, "an existing directory, wheel or source archive")
  }
  if (grepl("[", package, fixed = TRUE)) {
    return(list(requirement = package, pip_options = character()))  # extras given already
  }
  name <- sub("^([A-Za-z0-9_.-]+).*$", "\\1", package)
  rest <- trimws(substring(package, nchar(name) + 1L))
  if (!is.null(wanted) && !nzchar(rest)) {
    rest <- paste0("==", wanted)
  } else if (!is.null(wanted) && startsWith(rest, "==")) {
    check_versions(wanted, trimws(substring(rest, 3L)), sprintf("the requirement %s", package))
  }
  list(requirement = sprintf("%s[%s]%s", name, backend, rest), pip_options = character())
}

# The version in a repository's pyproject.toml, or NA when it has none.
repository_version <- function(path) {
  pyproject <- file.path(path, "pyproject.toml")
  if (!file.exists(pyproject)) {
    stop_argument("package", path, "a pygqa repository (a directory with a pyproject.toml)")
  }
  lines <- readLines(pyproject, warn = FALSE)
  version <- sub('^version\\s*=\\s*"([^"]+)".*$', "\\1", grep('^version\\s*=', lines, value = TRUE))
  if (length(version)) version[[1L]] else NA_character_
}

# A Python of version 3.10 or newer to create the environment with.
python_for_virtualenv <- function(python) {
  if (is.null(python)) {
    starter <- tryCatch(reticulate::virtualenv_starter(">=3.10"), error = function(e) NULL)
    if (is.null(starter)) {
      stop_install(paste0(
        "No Python 3.10 or newer that can create virtual environments was found.\n",
        "Install one (Debian or Ubuntu: `sudo apt install python3 python3-venv`; anywhere: ",
        "`reticulate::install_python()`), then run install_pygqa() again, or pass its path ",
        "as `python`."
      ), "pygqa_python_missing")
    }
    return(starter)
  }
  if (!is.character(python) || length(python) != 1L || is.na(python) ||
      !nzchar(Sys.which(python))) {
    stop_argument("python", python, "the path of a Python 3.10 or newer executable")
  }
  version <- tryCatch(
    suppressWarnings(system2(Sys.which(python), c("-c", shQuote(
      "import sys; print('%d.%d' % sys.version_info[:2])")), stdout = TRUE, stderr = FALSE)),
    error = function(e) character()
  )
  if (length(version) != 1L || !grepl("^[0-9]+[.][0-9]+$", version) ||
      numeric_version(version) < "3.10") {
    shown <- if (length(version) == 1L) paste0("Python ", version) else "not a working Python"
    stop_argument("python", python, sprintf("the path of a Python 3.10 or newer (this is %s)", shown))
  }
  unname(Sys.which(python))
}

# Imports pygqa and Keras in the new environment's Python, in a child process.
installed_versions <- function(python, backend) {
  code <- paste0("import keras, pygqa; print(pygqa.__version__); print(keras.__version__); ",
                 "print(keras.backend.backend())")
  output <- with_envvar(c(KERAS_BACKEND = backend), suppressWarnings(
    system2(python, c("-c", shQuote(code)), stdout = TRUE, stderr = TRUE)))
  status <- attr(output, "status")
  if (!is.null(status) && status != 0L || length(output) < 3L) {
    stop_install(paste0(
      "pip finished, but `import pygqa` fails in ", python, ":\n",
      paste(utils::tail(output, 10L), collapse = "\n"),
      "\nRun install_pygqa() again with new_env = TRUE, or read the error above."
    ))
  }
  output <- utils::tail(output, 3L)
  c(pygqa = output[[1L]], keras = output[[2L]], backend = output[[3L]])
}

next_steps <- function(envname, python, backend, installed) {
  default_env <- identical(envname, "r-pygqa")
  use <- if (default_env) {
    "reticulate finds it by its name r-pygqa (unless RETICULATE_PYTHON points elsewhere)"
  } else {
    sprintf("point reticulate at it before the first pygqa call: Sys.setenv(RETICULATE_PYTHON = \"%s\")",
            python)
  }
  backend_step <- if (backend == "tensorflow") "" else
    sprintf(", and Sys.setenv(KERAS_BACKEND = \"%s\") (TensorFlow is the default)", backend)
  sprintf(paste0(
    "Installed pygqa %s (Python), Keras %s and the %s backend into %s.\n",
    "Next: restart R; then %s%s. library(pygqa); pygqa_available() should say TRUE."),
    installed[["pygqa"]], installed[["keras"]], installed[["backend"]], python, use, backend_step)
}

stop_install <- function(message, class = character()) {
  stop(pygqa_condition(message, c(class, "pygqa_install_error"), call = NULL))
}

# Sets environment variables while `expr` runs (withr is not a dependency).
with_envvar <- function(vars, expr) {
  old <- Sys.getenv(names(vars), unset = NA, names = TRUE)
  do.call(Sys.setenv, as.list(vars))
  on.exit({
    for (name in names(old)) {
      if (is.na(old[[name]])) Sys.unsetenv(name) else do.call(Sys.setenv, as.list(old[name]))
    }
  })
  expr
}
