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
