# R half of the reproducible-training tests (test_xlang_training.py). The
# model, the seeding and the training loop are written the way an R user of
# pygqa writes them: R numbers, the package's layer_group_query_attention()
# in a pipe, set_random_seed(), and the Keras handle `keras` for the other
# layers. Python sends the data and a named list of sizes; nothing else.

library(pygqa)

# Embedding (padding token 0 is masked) -> `blocks` x [causal grouped-query
# self-attention with dropout, residual, layer norm] -> logits per position.
build_model_r <- function(cfg) {
  inputs <- keras$Input(shape = list(NULL), dtype = "int32")
  x <- inputs |> keras$layers$Embedding(as.integer(cfg$vocab), as.integer(cfg$width),
                                        mask_zero = TRUE)()
  for (i in seq_len(cfg$blocks)) {
    attended <- list(x, use_causal_mask = TRUE) |>
      layer_group_query_attention(head_dim = cfg$head_dim, num_query_heads = cfg$query_heads,
                                  num_key_value_heads = cfg$kv_heads, dropout = cfg$dropout)
    x <- keras$layers$Add()(list(x, attended)) |> keras$layers$LayerNormalization()()
  }
  outputs <- x |> keras$layers$Dense(as.integer(cfg$vocab))()
  model <- keras$Model(inputs, outputs)
  model$compile(optimizer = keras$optimizers$Adam(cfg$learning_rate),
                loss = keras$losses$SparseCategoricalCrossentropy(from_logits = TRUE))
  model
}

# Keras does not save random-number state in a .keras file. Reseeding at the
# start of every epoch makes each epoch's shuffle and dropout draws a function
# of (seed, epoch) alone, so a run resumed from a file continues exactly as an
# uninterrupted one. Each dropout generator keeps its own seed (the first
# element of its state) and restarts its counter at epoch * 1e6.
reseed_each_epoch <- function(model, seed) {
  np <- reticulate::import("numpy", convert = FALSE)
  keras$callbacks$LambdaCallback(on_epoch_begin = function(epoch, logs = NULL) {
    set_random_seed(seed + epoch)
    for (v in model$variables) {
      if (identical(v$name, "seed_generator_state")) {
        own_seed <- as.numeric(keras$ops$convert_to_numpy(v))[[1]]
        v$assign(np$array(c(own_seed, epoch * 1e6), dtype = v$dtype))
      }
    }
  })
}

# Trains `model` for epochs initial_epoch + 1 .. epochs; returns the loss Keras
# logs after every step and the final weights. The seed set just before fit()
# fixes TensorFlow's shuffle order (its tf.data pipeline is seeded when fit()
# starts); the callback does the rest.
train_r <- function(model, cfg, x, y, epochs, initial_epoch = 0) {
  losses <- numeric()
  record <- keras$callbacks$LambdaCallback(on_train_batch_end = function(batch, logs) {
    losses <<- c(losses, as.numeric(logs$loss))
  })
  set_random_seed(cfg$seed)
  model$fit(x, y, batch_size = as.integer(cfg$batch_size), epochs = as.integer(epochs),
            initial_epoch = as.integer(initial_epoch), shuffle = TRUE, verbose = 0L,
            callbacks = list(reseed_each_epoch(model, cfg$seed), record))
  list(losses = losses, weights = lapply(model$get_weights(), as.array))
}

# set_random_seed(), a fresh model, `epochs` epochs; saves it to `path` (with
# the optimizer state) when given. Returns the model too, for evaluate_r().
fit_r <- function(cfg, x, y, epochs, path = NULL) {
  set_random_seed(cfg$seed)
  model <- build_model_r(cfg)
  initial <- lapply(model$get_weights(), as.array)
  result <- train_r(model, cfg, x, y, epochs)
  if (!is.null(path)) model$save(path)
  c(result, list(initial = initial, model = model))
}

# A model saved by Python after some epochs, loaded with the R package and
# trained on to `epochs`.
resume_r <- function(cfg, path, x, y, epochs, initial_epoch) {
  model <- load_pygqa_model(path)
  train_r(model, cfg, x, y, epochs, initial_epoch)
}

# evaluate() and predict() of a model fit_r() trained, on held-out data.
evaluate_r <- function(model, x, y) {
  list(loss = as.numeric(model$evaluate(x, y, verbose = 0L)),
       predictions = as.array(model$predict(x, verbose = 0L)))
}
