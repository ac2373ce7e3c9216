# The R package and the Python package are released together, under one
# version number (pyproject.toml and DESCRIPTION agree, a test checks it). A
# Python pygqa of another version may call the layer with other arguments or
# save other configs, so the first use refuses it, naming both versions.

# Called by pygqa_module() on the freshly imported Python module.
check_python_version <- function(module) {
  python_version <- tryCatch(as.character(reticulate::py_to_r(module$`__version__`)),
                             error = function(e) NA_character_)
  check_versions(r_package_version(), python_version, paste("Python", python_in_use()))
  invisible(module)
}

r_package_version <- function() as.character(utils::packageVersion("pygqa"))

# `where` says where the Python version was read. `python_version` NA or
# "0+unknown": a source tree imported without being installed, which cannot
# tell its version; it is let through.
check_versions <- function(r_version, python_version, where) {
  if (is.na(python_version) || identical(python_version, "0+unknown") ||
      same_version(r_version, python_version)) {
    return(invisible(TRUE))
  }
  message <- paste0(
    "The R package pygqa is version ", r_version, ", but the Python package pygqa is version ",
    python_version, " (", where, "). Both must be the same version.\n",
    "To fix it, install the matching Python package and restart R: ",
    "`pygqa::install_pygqa(\"pygqa==", r_version, "\")`, or `pygqa::install_pygqa(\"<path of a ",
    "pygqa repository at version ", r_version, ">\")`; or install version ", python_version,
    " of the R package."
  )
  stop(pygqa_condition(message, "pygqa_version_mismatch", call = NULL,
                       r_version = r_version, python_version = python_version))
}

# "0.1.0" and "0.1" are the same release; versions R cannot parse ("0.1.0rc1")
# must match as text.
same_version <- function(a, b) {
  parsed <- tryCatch(list(numeric_version(a), numeric_version(b)), error = function(e) NULL)
  if (is.null(parsed)) identical(a, b) else parsed[[1]] == parsed[[2]]
}
