# install_pygqa() as a new user runs it, and the version agreement between the
# R package and the Python package. The first tests need no Python; the last
# one builds the Python distribution, creates a fresh virtual environment with
# install_pygqa() from the repository, then installs the wheel into it, and
# uses it from a fresh Rscript after each step.

# A new empty directory (the caller removes it).
scratch_dir <- function() {
  dir <- tempfile("pygqa-install-")
  dir.create(dir)
  dir
}

test_that("R and Python versions must agree; a mismatch names both", {
  expect_true(pygqa:::check_versions("0.1.0", "0.1.0", "Python /x/python"))
  expect_true(pygqa:::check_versions("0.1.0", "0.1", "Python /x/python"))
  expect_true(pygqa:::check_versions("0.1.0", "0+unknown", "Python /x/python"))  # a source tree
  err <- expect_error(pygqa:::check_versions("0.1.0", "0.2.0", "Python /x/python"),
                      class = "pygqa_version_mismatch")
  expect_s3_class(err, "pygqa_error")
  expect_match(conditionMessage(err), paste(
    "The R package pygqa is version 0.1.0, but the Python package pygqa is version 0.2.0",
    "(Python /x/python)"), fixed = TRUE)
  expect_match(conditionMessage(err), 'pygqa::install_pygqa("pygqa==0.1.0")', fixed = TRUE)
  expect_identical(c(err$r_version, err$python_version), c("0.1.0", "0.2.0"))
})

test_that("install_pygqa() pins the R package's version and refuses other versions early", {
  here <- "0.1.0"
  expect_identical(pygqa:::pip_requirement("pygqa", "jax", here)$requirement, "pygqa[jax]==0.1.0")
  expect_identical(pygqa:::pip_requirement("pygqa==0.1.0", "jax", here)$requirement,
                   "pygqa[jax]==0.1.0")
  expect_error(pygqa:::pip_requirement("pygqa==0.3.1", "jax", here),
               "version 0.1.0, but the Python package pygqa is version 0.3.1",
               class = "pygqa_version_mismatch")

  dir <- scratch_dir()
  empty <- scratch_dir()
  on.exit(unlink(c(dir, empty), recursive = TRUE), add = TRUE)
  writeLines(c("[project]", 'name = "pygqa"', 'version = "0.9.0"'), file.path(dir, "pyproject.toml"))
  expect_error(pygqa:::pip_requirement(dir, "jax", here), "is version 0.9.0 \\(the repository",
               class = "pygqa_version_mismatch")
  expect_error(pygqa:::pip_requirement(empty, "jax", here), "pyproject.toml",
               class = "pygqa_argument_error")

  wheel <- file.path(dir, "pygqa-0.1.0-py3-none-any.whl")
  file.create(wheel)
  spec <- pygqa:::pip_requirement(wheel, "tensorflow", here)
  expect_identical(spec$requirement, paste0(normalizePath(wheel), "[tensorflow]"))
  expect_identical(spec$pip_options, character())
  other <- file.path(dir, "pygqa-0.2.0.tar.gz")
  file.create(other)
  expect_error(pygqa:::pip_requirement(other, "jax", here), "is version 0.2.0 \\(the file",
               class = "pygqa_version_mismatch")
  expect_error(pygqa:::pip_requirement(file.path(dir, "missing.whl"), "jax", here),
               "Received an invalid value for `package`", class = "pygqa_argument_error")
  expect_error(pygqa:::pip_requirement("./no/such/dir", "jax", here),
               "an existing directory, wheel or source archive", class = "pygqa_argument_error")
})

test_that("install_pygqa() names a bad `python` or `envname` before doing anything", {
  expect_error(install_pygqa(python = "/no/such/python3", envname = tempfile()),
               "Received an invalid value for `python`", class = "pygqa_argument_error")
  not_python <- Sys.which("true")
  skip_if(!nzchar(not_python), "no `true` executable")
  expect_error(install_pygqa(python = not_python, envname = tempfile()),
               "this is not a working Python", class = "pygqa_argument_error")
  expect_error(install_pygqa(envname = NA_character_), "Received an invalid value for `envname`",
               class = "pygqa_argument_error")
})

# --- the real thing ---------------------------------------------------------

# The repository these tests were run from (r-wrapper/tests/testthat), or NULL
# (R CMD check runs a copy of the package without it).
repository <- function() {
  root <- normalizePath(testthat::test_path("..", "..", ".."), mustWork = FALSE)
  pyproject <- file.path(root, "pyproject.toml")
  if (file.exists(pyproject) && any(grepl('^name = "pygqa"', readLines(pyproject)))) root else NULL
}

# Runs `lines` in a new Rscript that uses `python` with the JAX backend and this
# session's R libraries; returns the lines it printed.
run_rscript_with <- function(python, lines) {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(lines, script)
  env <- c(paste0("RETICULATE_PYTHON=", python), "KERAS_BACKEND=jax", "TF_CPP_MIN_LOG_LEVEL=2",
           paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)))
  suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", shQuote(script)),
                           stdout = TRUE, stderr = TRUE, env = env))
}

# A layer with known weights in a fresh R session; the output must equal the
# plain-R reference. Also reports where Python and pygqa came from.
expect_working_environment <- function(python, where_pygqa) {
  set.seed(5)
  x <- random_array(2, 5, 8)
  probe <- new_gqa()
  probe(x)
  weights <- lapply(probe$get_weights(), function(w) {
    d <- dim(w) %||% length(w)
    array(stats::rnorm(prod(d), sd = 0.3), dim = d)
  })
  io <- tempfile(fileext = ".rds")
  on.exit(unlink(io), add = TRUE)
  saveRDS(list(x = x, weights = weights), io)
  lines <- c(
    "suppressPackageStartupMessages(library(pygqa))",
    sprintf("io <- readRDS('%s')", io),
    "gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)",
    "invisible(gqa(io$x))",
    "gqa$set_weights(io$weights)",
    "out <- as.array(gqa(io$x, use_causal_mask = TRUE))",
    "cat('PYTHON', reticulate::py_config()$python, '\\n')",
    "cat('PYGQA', reticulate::import('pygqa')$`__file__`, '\\n')",
    "cat('BACKEND', keras$backend$backend(), '\\n')",
    sprintf("saveRDS(out, '%s')", io)
  )
  printed <- run_rscript_with(python, lines)
  field <- function(key) sub(paste0("^", key, " (.*?) *$"), "\\1", grep(paste0("^", key, " "),
                                                                      printed, value = TRUE))
  expect_identical(field("BACKEND"), "jax", info = paste(printed, collapse = "\n"))
  expect_identical(normalizePath(field("PYTHON")), normalizePath(python))
  expect_true(startsWith(normalizePath(field("PYGQA")), normalizePath(where_pygqa)))
  want <- reference_gqa(weights, x, allowed = causal(2, 5, 5))$attention_output
  expect_equal(readRDS(io), want, tolerance = tol_reference)
}

test_that("install_pygqa() from the repository and from its wheel gives a working pygqa", {
  skip_on_cran()
  skip_if_no_pygqa()  # the Python that builds the wheel and starts the environments
  repo <- repository()
  skip_if(is.null(repo), "needs the pygqa repository (R CMD check's copy of the package has none)")
  python <- reticulate::py_config()$python
  work <- scratch_dir()
  on.exit(unlink(work, recursive = TRUE), add = TRUE)

  # The versions this project tests with (they lie in the machine's wheel cache
  # or index): light, and pip cannot pull a newer multi-GB release instead.
  constraints <- file.path(work, "constraints.txt")
  frozen <- system2(python, c("-m", "pip", "freeze", "--exclude-editable"), stdout = TRUE)
  writeLines(grep("^[A-Za-z0-9_.-]+==", frozen, value = TRUE), constraints)
  Sys.setenv(PIP_CONSTRAINT = constraints, PIP_DISABLE_PIP_VERSION_CHECK = "1")
  on.exit(Sys.unsetenv(c("PIP_CONSTRAINT", "PIP_DISABLE_PIP_VERSION_CHECK")), add = TRUE)

  # 1. A release build: wheel and sdist, and what pip will read from them.
  dist <- file.path(work, "dist")
  built <- system2(python, c("-m", "build", "--outdir", shQuote(dist), shQuote(repo)),
                   stdout = TRUE, stderr = TRUE)
  version <- as.character(utils::packageVersion("pygqa"))
  wheel <- file.path(dist, sprintf("pygqa-%s-py3-none-any.whl", version))
  expect_true(file.exists(wheel), info = paste(utils::tail(built, 20), collapse = "\n"))
  expect_true(file.exists(file.path(dist, sprintf("pygqa-%s.tar.gz", version))))
  meta_dir <- file.path(work, "meta")
  utils::unzip(wheel, exdir = meta_dir)
  metadata <- readLines(file.path(meta_dir, sprintf("pygqa-%s.dist-info", version), "METADATA"))
  for (line in c("Name: pygqa", paste("Version:", version), "Requires-Python: >=3.10",
                 "License-Expression: Apache-2.0", "Description-Content-Type: text/markdown",
                 "Requires-Dist: keras>=3.8", "Provides-Extra: jax",
                 'Requires-Dist: tensorflow-cpu>=2.16; extra == "tensorflow"')) {
    expect_true(line %in% metadata, info = line)
  }
  expect_true(file.exists(file.path(meta_dir, "pygqa", "layer.py")))
  expect_true(file.exists(file.path(meta_dir, "pygqa", "place_names.py")))
  expect_false(dir.exists(file.path(meta_dir, "tests")))

  # 2. From the repository (editable), into a fresh environment.
  env <- file.path(work, "from-repo")
  messages <- capture_messages(
    env_python <- install_pygqa(repo, backend = "jax", envname = env, python = python)
  )
  expect_match(messages, "Creating the virtual environment", all = FALSE)
  expect_match(messages, "Installing .*\\[jax\\] with pip", all = FALSE)
  expect_match(messages, sprintf("Installed pygqa %s \\(Python\\)", version), all = FALSE)
  expect_match(messages, "Next: restart R; then point reticulate at it", all = FALSE)
  expect_match(messages, 'Sys.setenv(KERAS_BACKEND = "jax")', fixed = TRUE, all = FALSE)
  expect_working_environment(env_python, file.path(repo, "pygqa"))

  # 3. From the wheel: the same environment's pygqa now comes from site-packages.
  messages <- capture_messages(install_pygqa(wheel, backend = "jax", envname = env))
  expect_false(any(grepl("Creating", messages)))  # the environment exists already
  expect_working_environment(env_python, env)
})
