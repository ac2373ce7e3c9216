# Errors: classes, and the message given when the Python side is missing.

test_that("a missing Python module explains what, where and how to fix it", {
  err <- expect_error(pygqa:::stop_python_missing("pygqa_no_such_module"),
                      class = "pygqa_python_missing")
  expect_s3_class(err, c("pygqa_python_missing", "pygqa_error", "error", "condition"),
                  exact = TRUE)
  message <- conditionMessage(err)
  expect_match(message, "The Python module 'pygqa_no_such_module' cannot be imported", fixed = TRUE)
  expect_match(message, "Python used: ", fixed = TRUE)
  expect_match(message, "pygqa::install_pygqa()", fixed = TRUE)
  expect_match(message, "-m pip install -e", fixed = TRUE)
  expect_match(message, "RETICULATE_PYTHON", fixed = TRUE)
})

test_that("the stand-in for a module that failed to load reports on use", {
  stand_in <- structure(list(module = "keras", error = simpleError("No module named 'keras'")),
                        class = "pygqa_missing_module")
  err <- expect_error(stand_in$Sequential, class = "pygqa_python_missing")
  expect_match(conditionMessage(err), "No module named 'keras'", fixed = TRUE)
  expect_output(print(stand_in), "not available")
})

test_that("Keras's call report is reduced to the original message", {
  wrapped <- paste0(
    "Exception encountered when calling GroupQueryAttention.call().\n\n",
    "\033[1mReceived an invalid value for `query`: bad.\nSecond line.\033[0m\n\n",
    "Arguments received by GroupQueryAttention.call():\n  \u2022 query=x"
  )
  expect_identical(pygqa:::unwrap_keras_call_message(wrapped),
                   "Received an invalid value for `query`: bad.\nSecond line.")
  expect_identical(pygqa:::unwrap_keras_call_message("plain"), "plain")
})

test_that("a wrong input shape arrives as a pygqa_error without Keras's report", {
  skip_if_no_pygqa()
  gqa <- new_gqa()
  gqa(random_array(1, 2, 8))
  err <- expect_error(gqa(random_array(1, 2, 3)), class = "pygqa_error")
  expect_identical(err$call[[1]], quote(gqa))
  expect_no_match(conditionMessage(err), "Exception encountered|Arguments received|\033")
  expect_match(conditionMessage(err), "query", fixed = TRUE)
  expect_s3_class(err$python_exception, "python.builtin.Exception")
})

test_that("when pygqa is importable, the module accessor returns it", {
  skip_if_no_pygqa()
  expect_true(pygqa_available())
  module <- pygqa:::pygqa_module()
  expect_identical(reticulate::py_to_r(module$`__version__`),
                   as.character(utils::packageVersion("pygqa")))
})

test_that("set_random_seed() makes initial weights reproducible", {
  skip_if_no_pygqa()
  set_random_seed(7)
  a <- new_gqa()
  a(random_array(1, 3, 8))
  set_random_seed(7)
  b <- new_gqa()
  b(random_array(1, 3, 8))
  expect_identical(a$get_weights(), b$get_weights())
  expect_error(set_random_seed(-3), class = "pygqa_argument_error")
})

test_that("first use with a Python that lacks pygqa fails with the explanation", {
  skip_on_cran()
  lacks_pygqa <- function(python) {
    nzchar(python) && file.exists(python) &&
      system2(python, c("-c", shQuote("import pygqa")), stdout = FALSE, stderr = FALSE) != 0L
  }
  candidates <- c(Sys.getenv("PYGQA_TEST_BARE_PYTHON"), "/usr/bin/python3",
                  "/usr/local/bin/python3", Sys.which("python3"))
  python <- Filter(lacks_pygqa, candidates)
  if (!length(python)) skip("no Python without pygqa to try")
  python <- python[[1]]
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(c(
    "library(pygqa)",
    "cat('AVAILABLE', pygqa_available(), '\\n')",
    "err <- tryCatch(layer_group_query_attention(head_dim = 4, num_query_heads = 4,",
    "  num_key_value_heads = 2), error = function(e) e)",
    "cat('CLASS', class(err), '\\n')",
    "cat(conditionMessage(err), '\\n')"
  ), script)
  env <- c(paste0("RETICULATE_PYTHON=", python),
           paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)))
  lines <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", shQuote(script)),
                   stdout = TRUE, stderr = FALSE, env = env)
  text <- paste(lines, collapse = "\n")
  expect_match(text, "AVAILABLE FALSE", fixed = TRUE)
  expect_match(text, "CLASS pygqa_python_missing pygqa_error error condition", fixed = TRUE)
  expect_match(text, "The Python module 'pygqa' cannot be imported", fixed = TRUE)
  expect_match(text, paste0("Python used: ", python), fixed = TRUE)
  expect_match(text, "pygqa::install_pygqa()", fixed = TRUE)
})
