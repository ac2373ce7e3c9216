# Saving and loading: weights come back bit for bit; bad files give classed errors.

saved_model <- function(path, use_bias = TRUE) {
  model <- keras$Sequential(list(keras$Input(shape = c(5L, 7L))))
  model |> layer_group_query_attention(head_dim = 3, num_query_heads = 6,
                                       num_key_value_heads = 2, use_bias = use_bias)
  set.seed(5)
  model$set_weights(lapply(model$get_weights(), function(w) {
    d <- dim(w) %||% length(w)
    array(stats::rnorm(prod(d)), dim = d)
  }))
  model$save(path)
  model
}

# Raw bytes of every weight as float32, C order (what the file stores). R holds
# float32 values as exact doubles, so the float32 bytes come back unchanged.
weight_bytes <- function(model) {
  np <- reticulate::import("numpy", convert = FALSE)
  builtins <- reticulate::import_builtins(convert = FALSE)
  lapply(model$get_weights(), function(w) {
    bytes <- np$ascontiguousarray(w, dtype = "float32")$tobytes()
    as.raw(unlist(reticulate::py_to_r(builtins$list(bytes))))
  })
}

test_that("a saved model loads with bit-identical weights, twice over", {
  skip_if_no_pygqa()
  for (use_bias in c(TRUE, FALSE)) {
    path <- tempfile(fileext = ".keras")
    model <- saved_model(path, use_bias)
    for (loader in list(load_pygqa_model, function(p) keras$saving$load_model(p))) {
      loaded <- loader(path)
      expect_length(loaded$get_weights(), if (use_bias) 8L else 4L)
      expect_identical(weight_bytes(loaded), weight_bytes(model))
      again <- tempfile(fileext = ".keras")
      loaded$save(again)
      expect_identical(weight_bytes(load_pygqa_model(again)), weight_bytes(model))
    }
  }
})

# A copy of a .keras file whose pygqa layers claim another pygqa version. The
# JSON is edited in Python: an R round trip would turn empty dicts into lists.
with_version <- function(source, target, version) {
  main <- reticulate::py_run_string(paste(
    "def _with_version(source, target, version):",
    "    import json, zipfile",
    "    with zipfile.ZipFile(source) as reader, zipfile.ZipFile(target, 'w') as writer:",
    "        for name in reader.namelist():",
    "            data = reader.read(name)",
    "            if name == 'config.json':",
    "                config = json.loads(data)",
    "                for layer in config['config']['layers']:",
    "                    if 'pygqa_version' in layer['config']:",
    "                        layer['config']['pygqa_version'] = version",
    "                data = json.dumps(config)",
    "            writer.writestr(name, data)",
    sep = "\n"), local = TRUE)
  main$`_with_version`(source, target, version)
  target
}

# keras$saving$load_model() called the way a user would, its error made a pygqa_error.
with_python_errors_for_test <- function(path) {
  pygqa:::with_python_errors(keras$saving$load_model(path))
}

test_that("a file from another pygqa minor version is refused, naming both versions", {
  skip_if_no_pygqa()
  path <- tempfile(fileext = ".keras")
  saved_model(path)
  installed <- as.character(utils::packageVersion("pygqa"))
  parts <- as.integer(strsplit(installed, ".", fixed = TRUE)[[1]])
  newer <- sprintf("%d.%d.0", parts[1], parts[2] + 1L)
  newer_file <- with_version(path, tempfile(fileext = ".keras"), newer)
  for (loader in list(load_pygqa_model, function(p) with_python_errors_for_test(p))) {
    err <- expect_error(loader(newer_file), class = "pygqa_error")
    expect_match(conditionMessage(err), sprintf("pygqa_version='%s'", newer), fixed = TRUE)
    expect_match(conditionMessage(err), installed, fixed = TRUE)
  }
  # The same major.minor with another patch number loads.
  patch <- with_version(path, tempfile(fileext = ".keras"), sprintf("%d.%d.99", parts[1], parts[2]))
  expect_length(load_pygqa_model(patch)$get_weights(), 8L)
})

test_that("missing, damaged and non-.keras files give classed errors naming the file", {
  skip_if_no_pygqa()
  good <- tempfile(fileext = ".keras")
  saved_model(good)
  bytes <- readBin(good, "raw", file.size(good))
  truncated <- tempfile(fileext = ".keras")
  writeBin(bytes[seq_len(length(bytes) %/% 2L)], truncated)
  text <- tempfile(fileext = ".keras")
  writeLines("not a model", text)
  other <- tempfile(fileext = ".txt")
  file.copy(good, other)
  cases <- list(
    list(truncated, "damaged or truncated"),
    list(text, "not a zip archive"),
    list(file.path(tempdir(), "nowhere.keras"), "does not exist"),
    list(other, "expected a path ending in `.keras`")
  )
  for (case in cases) {
    err <- expect_error(load_pygqa_model(case[[1]]), class = "pygqa_error")
    expect_match(conditionMessage(err), "Received an invalid value for `filepath`", fixed = TRUE)
    expect_match(conditionMessage(err), case[[2]], fixed = TRUE)
    expect_match(conditionMessage(err), basename(case[[1]]), fixed = TRUE)
  }
  err <- expect_error(load_pygqa_model(NA_character_), class = "pygqa_argument_error")
  expect_match(conditionMessage(err), "filepath=NA_character_", fixed = TRUE)
  expect_error(load_pygqa_model(good, compile = NA), class = "pygqa_argument_error")
})

# A model as users save one: padded token ids, an Embedding that masks the
# padding, the layer reading that mask, pooled to one number per sequence.
padded_token_model <- function() {
  keras_py <- py_module("keras")
  inputs <- keras$Input(shape = list(9L), dtype = "int32")
  embedded <- keras$layers$Embedding(20L, 8L, mask_zero = TRUE)(inputs)
  attended <- layer_group_query_attention(embedded, head_dim = 4, num_query_heads = 4,
                                          num_key_value_heads = 2, name = "gqa")
  pooled <- keras$layers$GlobalAveragePooling1D()(attended)
  keras$Model(inputs, keras$layers$Dense(1L)(pooled))
}

# Runs `lines` in a new Rscript (same library paths, Python and backend) and
# returns its standard output; the status is an attribute when it failed.
run_fresh_r <- function(lines) {
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(lines, script)
  env <- c(paste0("R_LIBS=", paste(.libPaths(), collapse = .Platform$path.sep)),
           "TF_CPP_MIN_LOG_LEVEL=2")
  suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", shQuote(script)),
                           stdout = TRUE, stderr = TRUE, env = env))
}

test_that("a fresh R session with only library(pygqa) loads a saved model, whoever imports Keras", {
  skip_on_cran()
  skip_if_no_pygqa()
  model <- padded_token_model()
  tokens <- matrix(c(3L, 4L, 5L, 6L, 0L, 0L, 0L, 0L, 0L,
                     7L, 8L, 9L, 10L, 11L, 12L, 13L, 0L, 0L), nrow = 2, byrow = TRUE)
  path <- tempfile(fileext = ".keras")
  model$save(path)
  expected <- model$predict(tokens, verbose = 0L)
  data <- tempfile(fileext = ".rds")
  saveRDS(list(tokens = tokens, path = path), data)
  # Each loader is the first thing in its session to import Keras; the last
  # one imports Keras before the package is attached.
  loaders <- c(
    package_handle = "library(pygqa); m <- keras$saving$load_model(d$path)",
    load_pygqa_model = "library(pygqa); m <- load_pygqa_model(d$path)",
    plain_reticulate = "library(pygqa); m <- reticulate::import('keras')$saving$load_model(d$path)",
    keras_imported_first = paste(
      "k <- reticulate::import('keras'); invisible(k$layers);",
      "library(pygqa); m <- k$saving$load_model(d$path)")
  )
  for (name in names(loaders)) {
    out <- tempfile(fileext = ".rds")
    lines <- run_fresh_r(c(
      sprintf("d <- readRDS('%s')", data),
      loaders[[name]],
      "stopifnot(inherits(m$get_layer('gqa'), 'pygqa.layer.GroupQueryAttention'))",
      sprintf("saveRDS(m$predict(d$tokens, verbose = 0L), '%s')", out)
    ))
    expect_null(attr(lines, "status"), label = paste(name, paste(lines, collapse = "\n")))
    expect_true(file.exists(out), label = name)
    if (file.exists(out)) expect_equal(readRDS(out), expected, tolerance = 1e-6, label = name)
  }
})
