# Every Keras backend: the backend is fixed once per Python process, so each
# one runs in a fresh R process (the current one tests its own backend).

run_on_backend <- function(backend, code) {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(code, script)
  env <- c(
    paste0("KERAS_BACKEND=", backend),
    paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)),
    "TF_CPP_MIN_LOG_LEVEL=2"
  )
  rscript <- file.path(R.home("bin"), "Rscript")
  suppressWarnings(system2(rscript, c("--vanilla", shQuote(script)), stdout = TRUE,
                           stderr = FALSE, env = env))
}

backend_installed <- function(module) {
  reticulate::py_module_available(module)
}

code <- c(
  "suppressPackageStartupMessages(library(pygqa))",
  "set.seed(1)",
  "x <- array(runif(2 * 5 * 8), c(2, 5, 8))",
  "gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4, num_key_value_heads = 2)",
  "res <- gqa(x, use_causal_mask = TRUE, return_attention_scores = TRUE)",
  "out <- as.array(res$attention_output)",
  "w <- gqa$get_weights()",
  "cat('BACKEND', keras$backend$backend(), '\\n')",
  "cat('DIM', dim(out), dim(as.array(res$attention_scores)), dim(res$attention_output), '\\n')",
  "cat('CLASS', class(out), '\\n')",
  "scores <- as.array(res$attention_scores)",
  "cat('ROWSUM', format(max(abs(apply(scores, c(1, 2, 3), sum) - 1))), '\\n')",
  "saveRDS(list(x = x, w = w, out = out), Sys.getenv('PYGQA_TEST_OUT'))"
)

for (backend in c("tensorflow", "jax", "torch")) {
  test_that(sprintf("%s backend: outputs convert with as.array() and match the R reference", backend), {
    skip_on_cran()
    skip_if_no_pygqa()
    module <- c(tensorflow = "tensorflow", jax = "jax", torch = "torch")[[backend]]
    if (!backend_installed(module)) skip(paste(backend, "is not installed"))
    result <- tempfile(fileext = ".rds")
    on.exit(unlink(result), add = TRUE)
    withr_env <- Sys.getenv("PYGQA_TEST_OUT", unset = NA)
    Sys.setenv(PYGQA_TEST_OUT = result)
    on.exit(if (is.na(withr_env)) Sys.unsetenv("PYGQA_TEST_OUT") else
      Sys.setenv(PYGQA_TEST_OUT = withr_env), add = TRUE)
    lines <- run_on_backend(backend, code)
    expect_null(attr(lines, "status"))
    expect_true(any(lines == paste("BACKEND", backend, "")), label = paste(lines, collapse = "\n"))
    expect_true("DIM 2 5 8 2 4 5 5 2 5 8 " %in% lines, label = paste(lines, collapse = "\n"))
    expect_true("CLASS array " %in% lines)
    rowsum_line <- grep("^ROWSUM", lines, value = TRUE)
    expect_length(rowsum_line, 1L)
    expect_lt(as.numeric(sub("ROWSUM ", "", rowsum_line)), 1e-6)
    saved <- readRDS(result)
    reference <- reference_gqa(saved$w, saved$x, allowed = causal(2, 5, 5))$attention_output
    expect_equal(saved$out, reference, tolerance = tol_reference)
  })
}
