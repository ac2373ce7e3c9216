# The place-names demo, R's half (the README's `bash scripts/run.sh demo`, or
# `python -m pygqa.demo`, trains the same model in Python beside it).
#
# A character-level model of 117 US place names (R's own datasets: state.name
# and the cities of precip): token and position embeddings, two blocks of
# causal grouped-query self-attention (8 query heads sharing 2 key/value heads)
# with a small feed-forward network, residuals and layer norms. It is trained
# with fit() and then generates names greedily with each attention layer's
# key/value cache.
#
# Two ways to run it:
# - From R: demo("place-names", package = "pygqa") trains with the settings
#   below and prints the losses and the generated names.
# - From the Python demo: `Rscript place-names.R <folder>` reads the settings
#   from <folder>/config.json, prints "step k" after every step and writes what
#   it got into <folder> (names, samples, losses, weights), which Python
#   compares with its own run.

suppressPackageStartupMessages(library(pygqa))
np <- reticulate::import("numpy", convert = FALSE)

# The settings of the Python demo (pygqa/demo.py; a test keeps them equal).
defaults <- list(
  seed = 2023L, width = 64L, head_dim = 8L, query_heads = 8L, kv_heads = 2L, blocks = 2L,
  dropout = 0.1, epochs = 60L, batch_size = 16L, learning_rate = 3e-3, prompts = "abcdmnsw"
)
dir <- commandArgs(trailingOnly = TRUE)[1]  # NA when run by demo()
from_python <- !is.na(dir)
cfg <- if (from_python) {
  jsonlite::read_json(file.path(dir, "config.json"), simplifyVector = TRUE)
} else {
  defaults
}
cfg$backend <- keras$backend$backend()
# As the Python demo, which runs beside it on the same cores.
if (from_python && identical(cfg$backend, "torch")) {
  reticulate::import("torch")$set_num_threads(1L)
}

places <- unique(tolower(c(datasets::state.name, names(datasets::precip))))
chars <- sort(unique(unlist(strsplit(places, ""))), method = "radix")  # code-point order
codes <- stats::setNames(seq_along(chars) + 1L, chars)                 # 0 pads, 1 = boundary
len <- max(nchar(places)) + 1L  # every name and its boundary token
encode <- function(name, last) {
  ids <- unname(codes[strsplit(name, "")[[1]]])
  ids <- if (last) c(ids, 1L) else c(1L, ids)
  c(ids, rep(0L, len - length(ids)))
}
x <- t(vapply(places, encode, integer(len), last = FALSE, USE.NAMES = FALSE))
y <- t(vapply(places, encode, integer(len), last = TRUE, USE.NAMES = FALSE))
positions <- matrix(seq_len(len) - 1L, nrow(x), len, byrow = TRUE)
vocab <- length(codes) + 2L
width <- as.integer(cfg$width)

set_random_seed(cfg$seed)
tokens_in <- keras$Input(shape = list(NULL), dtype = "int32", name = "tokens")
positions_in <- keras$Input(shape = list(NULL), dtype = "int32", name = "positions")
token_vectors <- tokens_in |>
  keras$layers$Embedding(vocab, width, mask_zero = TRUE, name = "token_embedding")()
position_vectors <- positions_in |>
  keras$layers$Embedding(len, width, name = "position_embedding")()
h <- keras$layers$Add(name = "embed")(list(token_vectors, position_vectors))
attention <- list()
for (b in seq_len(cfg$blocks)) {
  attention[[b]] <- layer_group_query_attention(
    head_dim = cfg$head_dim, num_query_heads = cfg$query_heads,
    num_key_value_heads = cfg$kv_heads, dropout = cfg$dropout, name = sprintf("attention_%d", b))
  attended <- attention[[b]](h, use_causal_mask = TRUE)
  h <- keras$layers$Add()(list(h, attended)) |>
    keras$layers$LayerNormalization(name = sprintf("norm_%da", b))()
  # One layer per statement: a layer draws its initial-weight seeds when it is
  # created, so layers must be created in Python's order (a pipe `x |> f() |> g()`
  # creates g's layer before f's).
  hidden <- h |>
    keras$layers$Dense(2L * width, activation = "relu", name = sprintf("ffn_%d_in", b))()
  hidden <- hidden |> keras$layers$Dense(width, name = sprintf("ffn_%d_out", b))()
  h <- keras$layers$Add()(list(h, hidden)) |>
    keras$layers$LayerNormalization(name = sprintf("norm_%db", b))()
}
logits <- h |> keras$layers$Dense(vocab, name = "logits")()
model <- keras$Model(list(tokens_in, positions_in), logits)
invisible(model$compile(optimizer = keras$optimizers$Adam(cfg$learning_rate),
                        loss = keras$losses$SparseCategoricalCrossentropy(from_logits = TRUE)))

losses <- numeric()
progress <- keras$callbacks$LambdaCallback(on_train_batch_end = function(batch, logs) {
  losses <<- c(losses, as.numeric(logs$loss))
  if (from_python) {
    cat("step", length(losses), "\n")
    flush(stdout())
  }
})
set_random_seed(cfg$seed)
history <- model$fit(list(x, positions), y, batch_size = as.integer(cfg$batch_size),
                     epochs = as.integer(cfg$epochs), shuffle = TRUE, verbose = 0L,
                     callbacks = list(progress))

# Greedy decoding with each attention layer's key/value cache, as in Python.
layer <- function(name) model$get_layer(name)
starts <- unname(codes[strsplit(cfg$prompts, "")[[1]]])
n <- length(starts)
caches <- lapply(attention, function(a) a$empty_cache(n, len))
current <- matrix(1L, n, 1L)
generated <- matrix(0L, n, 0L)
for (i in seq_len(len - 1L) - 1L) {
  e <- layer("embed")(list(layer("token_embedding")(current),
                           layer("position_embedding")(matrix(i, n, 1L))))
  for (b in seq_along(attention)) {
    step <- attention[[b]](e, cache = caches[[b]], cache_update_index = i,
                           use_causal_mask = TRUE)
    caches[[b]] <- step$cache
    e <- layer(sprintf("norm_%da", b))(keras$ops$add(e, step$attention_output))
    hidden <- layer(sprintf("ffn_%d_out", b))(layer(sprintf("ffn_%d_in", b))(e))
    e <- layer(sprintf("norm_%db", b))(keras$ops$add(e, hidden))
  }
  scores <- as.array(layer("logits")(e))
  predicted <- apply(matrix(scores, n), 1L, which.max) - 1L  # token ids count from 0
  current <- matrix(if (i == 0L) starts else predicted, n, 1L)
  generated <- cbind(generated, current)
}
text <- apply(generated, 1L, function(ids) {
  end <- match(1L, ids, nomatch = length(ids) + 1L)
  paste(names(codes)[ids[seq_len(end - 1L)] - 1L], collapse = "")
})

if (from_python) {
  writeLines(places, file.path(dir, "names.txt"))
  writeLines(text, file.path(dir, "samples.txt"))
  invisible(np$save(file.path(dir, "losses.npy"), np$asarray(losses)))
  invisible(np$save(file.path(dir, "epoch_losses.npy"), np$asarray(unlist(history$history$loss))))
  weights <- model$get_weights()
  for (i in seq_along(weights)) {
    np$save(file.path(dir, sprintf("w%03d.npy", i - 1L)), np$asarray(weights[[i]], dtype = "float32"))
  }
  cat(sprintf("done R %s, pygqa %s, backend %s\n", getRversion(), packageVersion("pygqa"),
              keras$backend$backend()))
} else {
  epochs <- unlist(history$history$loss)
  cat(sprintf("trained %d epochs on %d names: loss %.3f -> %.3f\n", length(epochs),
              length(places), epochs[[1]], epochs[[length(epochs)]]))
  cat("generated with the key/value cache:", paste(text, collapse = ", "), "\n")
}
