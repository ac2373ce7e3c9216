# R half of the cross-language tests. Sourced once per pytest session into its
# own environment; pytest calls these functions through rpy2. Everything here
# is what an R user would write: R doubles for sizes, R arrays for inputs,
# R logical arrays for masks, as.array() for results.

library(pygqa)

# A tensor (or a list from return_attention_scores = TRUE) as R arrays.
as_result <- function(out) {
  if (is.list(out)) {
    list(output = as.array(out$attention_output), scores = as.array(out$attention_scores))
  } else {
    list(output = as.array(out))
  }
}

# Weights as plain R arrays (a 1-d bias stays a 1-d array).
weights_of <- function(layer) lapply(layer$get_weights(), as.array)

# One layout, several calls, one round trip. `layer_args` are R-native
# constructor arguments; `weights` are Python-made weights to read (a list of R
# arrays), or NULL to make the weights here with R's own generator.
run_group <- function(layer_args, weights, query, value, key, calls, r_seed) {
  gqa <- do.call(layer_group_query_attention, layer_args)
  gqa(query, value, key)  # builds the weights
  if (is.null(weights)) {
    set.seed(r_seed)
    weights <- lapply(gqa$get_weights(), function(w) {
      d <- dim(w) %||% length(w)
      array(stats::rnorm(prod(d), sd = 0.3), dim = d)
    })
  }
  gqa$set_weights(weights)
  results <- lapply(calls, function(args) {
    as_result(do.call(gqa, c(list(query, value, key), args)))
  })
  list(weights = weights_of(gqa), results = results)
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# Each `object` form of layer_group_query_attention(), evaluated the R way.
# Returns the output as an R array, and the layer's weights.
compose_form <- function(form, q, v, k, mask, layer_args) {
  make <- function(object) {
    if (identical(object, "<missing>")) do.call(layer_group_query_attention, layer_args)
    else do.call(layer_group_query_attention, c(list(object), layer_args))
  }
  np <- reticulate::import("numpy", convert = FALSE)
  switch(form,
    missing = {
      gqa <- make("<missing>")
      list(output = as.array(gqa(q, v)), weights = weights_of(gqa))
    },
    null = {
      gqa <- make(NULL)
      list(output = as.array(gqa(q, v)), weights = weights_of(gqa))
    },
    sequential = {
      model <- keras$Sequential(list(keras$Input(shape = dim(q)[-1])))
      model |> make()
      list(output = as.array(model(q)), weights = weights_of(model$layers[[1]]))
    },
    tensor = {
      out <- make(keras$ops$convert_to_tensor(np$asarray(q, dtype = "float32")))
      list(output = as.array(out))
    },
    r_array = list(output = as.array(make(q))),
    numpy = list(output = as.array(make(reticulate::np_array(q, dtype = "float32")))),
    keras_input = {
      input <- keras$Input(shape = dim(q)[-1])
      model <- keras$Model(input, make(input))
      list(output = as.array(model(q)))
    },
    list2 = list(output = as.array(make(list(q, v)))),
    list3 = list(output = as.array(make(list(q, v, k)))),
    named_list = as_result(make(list(query = q, value = v, key = k, attention_mask = mask,
                                     use_causal_mask = TRUE, return_attention_scores = TRUE))),
    python_list = list(output = as.array(make(reticulate::r_to_py(list(
      reticulate::np_array(q, dtype = "float32"), reticulate::np_array(v, dtype = "float32")))))),
    stop("unknown form ", form)
  )
}

# set_random_seed() then a layer with no seed of its own: initial weights and
# an output, for comparison with Python's keras.utils.set_random_seed().
seeded_init <- function(seed, layer_args, q, v) {
  set_random_seed(seed)
  gqa <- do.call(layer_group_query_attention, layer_args)
  out <- as.array(gqa(q, v))
  list(output = out, weights = weights_of(gqa), runif = stats::runif(3))
}

# A layer with seeded dropout, called in training mode.
dropout_call <- function(q) {
  gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
                                     num_key_value_heads = 2, dropout = 0.5, seed = 9)
  as.array(gqa(q, training = TRUE))
}

# Runs R code given as text; returns the error's classes and message, or
# NULL classes when nothing was raised.
error_of <- function(code, env) {
  tryCatch({
    eval(parse(text = code), envir = env)
    list(classes = character(), message = "")
  }, error = function(e) list(classes = class(e), message = conditionMessage(e),
                              python_type = e$python_type))
}

# A fresh environment with the objects the error table's R code refers to.
error_env <- function() {
  env <- new.env(parent = globalenv())
  set.seed(3)
  env$x <- function(...) array(stats::runif(prod(c(...)), -1, 1), dim = c(...))
  env$gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
                                         num_key_value_heads = 2)
  env$q <- env$x(2, 7, 8)
  env$v <- env$x(2, 5, 8)
  env$gqa(env$q, env$v)  # built for 8 features
  env$L <- layer_group_query_attention
  env$functional <- function() {
    i <- keras$Input(shape = c(3L, 4L))
    keras$Model(i, keras$layers$Dense(4L)(i))
  }
  env
}

# --- files --------------------------------------------------------------------
r_model <- function(layer_args, shape) {
  model <- keras$Sequential(list(keras$Input(shape = as.integer(shape))))
  do.call(layer_group_query_attention, c(list(model), layer_args))  # adds the layer
  model
}

save_model_r <- function(path, layer_args, shape, x, what) {
  model <- r_model(layer_args, shape)
  layer <- model$layers[[1]]
  set.seed(11)
  layer$set_weights(lapply(layer$get_weights(), function(w) {
    d <- dim(w) %||% length(w)
    array(stats::rnorm(prod(d), sd = 0.3), dim = d)
  }))
  if (what == "model") model$save(path) else model$save_weights(path)
  as.array(model(x))
}

load_model_r <- function(path, layer_args, shape, x, what) {
  if (what == "model") {
    model <- keras$saving$load_model(path)
  } else {
    model <- r_model(layer_args, shape)
    model$load_weights(path)
  }
  list(output = as.array(model(x)), class = class(model$layers[[1]])[[1]])
}

# --- the bridge under load ---------------------------------------------------
bridge_layer <- NULL
bridge_step <- function(i) {
  if (is.null(bridge_layer)) {
    bridge_layer <<- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
                                                 num_key_value_heads = 2)
  }
  x <- array(stats::runif(2 * 5 * 8), dim = c(2, 5, 8))
  res <- bridge_layer(x, return_attention_scores = TRUE)
  out <- as.array(res$attention_output)
  scores <- as.array(res$attention_scores)
  # A young-generation collection every step frees this step's objects
  # (reticulate's finalizers run); a full one every 100 steps (it costs ~0.3 s).
  invisible(gc(verbose = FALSE, full = i %% 100 == 0))
  c(dim(out), sum(scores))
}

# --- bit-identical files ------------------------------------------------------
# A model saved from R with random weights; returns those weights (R doubles
# that hold float32 values exactly).
save_weights_file_r <- function(path, layer_args, shape) {
  model <- r_model(layer_args, shape)
  set.seed(12)
  model$set_weights(lapply(model$get_weights(), function(w) {
    d <- dim(w) %||% length(w)
    array(stats::rnorm(prod(d)), dim = d)
  }))
  model$save(path)
  lapply(model$get_weights(), as.array)
}

# The weights of a .keras file as R loads it with load_pygqa_model().
load_weights_file_r <- function(path) lapply(load_pygqa_model(path)$get_weights(), as.array)

# The classes and message of load_pygqa_model()'s error for a file.
load_error_r <- function(path) {
  tryCatch({
    load_pygqa_model(path)
    list(classes = character(), message = "")
  }, error = function(e) list(classes = class(e), message = conditionMessage(e)))
}
