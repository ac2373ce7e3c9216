# R conditions raised by pygqa. Every error the package signals inherits from
# `pygqa_error`, so callers can catch them all with one handler:
#   * pygqa_argument_error: a bad R argument, found in R before Python runs;
#   * pygqa_python_missing: Python, Keras or the `pygqa` module cannot be used;
#   * plain pygqa_error: an exception raised in Python (its type is kept in
#     the `python_type` field, the exception itself in `python_exception`).

pygqa_condition <- function(message, class = character(), call = NULL, ...) {
  structure(
    class = c(class, "pygqa_error", "error", "condition"),
    list(message = message, call = call, ...)
  )
}

stop_argument <- function(argument, value, expected, call = NULL) {
  message <- sprintf(
    "Received an invalid value for `%s`: expected %s. Received: %s=%s",
    argument, expected, argument, describe_value(value)
  )
  stop(pygqa_condition(message, "pygqa_argument_error", call,
                       argument = argument, value = value))
}

# A short, R-flavoured rendering of a bad value: 4.5, "4", TRUE, c(4, 8), NULL;
# arrays by type and dim, <character array, dim c(2, 5, 8)>, not by contents.
describe_value <- function(value) {
  if (is.atomic(value) && length(dim(value)) > 1L) {
    return(sprintf("<%s array, dim c(%s)>", typeof(value), paste(dim(value), collapse = ", ")))
  }
  text <- paste(deparse(value, width.cutoff = 60L, nlines = 2L), collapse = " ")
  if (nchar(text) > 60L) paste0(substr(text, 1L, 57L), "...") else text
}

# Runs `expr`; a Python exception becomes a `pygqa_error` carrying Python's own
# message. reticulate's default message adds a type prefix and a pointer to
# `py_last_error()`, which is noise for a user who passed a bad value.
with_python_errors <- function(expr, call = sys.call(-1L)) {
  force(call)
  tryCatch(expr, python.builtin.Exception = function(e) {
    stop(pygqa_condition(
      python_message(e), call = call,
      python_type = sub("^python\\.builtin\\.", "", class(e)[[1L]]),
      python_exception = e
    ))
  })
}

python_message <- function(e) {
  message <- tryCatch(reticulate::py_str(e), error = function(err) conditionMessage(e))
  unwrap_keras_call_message(trimws(message))
}

# Keras re-raises errors from a layer's call() inside a report of the call's
# arguments, with the original message in bold (ANSI escapes). Keep the message.
unwrap_keras_call_message <- function(message) {
  pattern <- "(?s)^Exception encountered when calling .*?\\033\\[1m(.*?)\\033\\[0m.*$"
  if (grepl(pattern, message, perl = TRUE)) {
    message <- sub(pattern, "\\1", message, perl = TRUE)
  }
  trimws(message)
}

# The explanation for a module that cannot be imported: what is missing, which
# Python was asked, and the commands that fix it.
stop_python_missing <- function(module, error = NULL) {
  python <- python_in_use()
  reason <- if (is.null(error)) "" else paste0(" (", one_line(conditionMessage(error)), ")")
  message <- paste0(
    "The Python module '", module, "' cannot be imported", reason, ".\n",
    "Python used: ", python, "\n",
    "To fix it, run `pygqa::install_pygqa()` and restart R (it creates the virtualenv ",
    "'r-pygqa', which reticulate uses by default),\n",
    "or install pygqa into this Python: `", python_command(python),
    " -m pip install -e '<path to the pygqa repository>[tensorflow]'`,\n",
    "or point RETICULATE_PYTHON at a Python that has it, before the first call."
  )
  stop(pygqa_condition(message, "pygqa_python_missing", call = NULL, module = module))
}

python_in_use <- function() {
  config <- tryCatch(
    if (reticulate::py_available()) reticulate::py_config() else reticulate::py_discover_config(),
    error = function(e) NULL
  )
  python <- if (is.null(config)) NULL else config$python
  if (is.null(python) || !nzchar(python)) {
    python <- "none found"
  }
  forced <- Sys.getenv("RETICULATE_PYTHON")
  if (nzchar(forced)) paste0(python, " (RETICULATE_PYTHON=", forced, ")") else python
}

python_command <- function(python) {
  if (startsWith(python, "none found")) "python3" else sub(" \\(RETICULATE_PYTHON=.*$", "", python)
}

one_line <- function(text) {
  text <- sub("\nRun `reticulate::py_last_error\\(\\)` for details\\.?$", "", text)
  gsub("\\s*\n\\s*", " ", trimws(text))
}
