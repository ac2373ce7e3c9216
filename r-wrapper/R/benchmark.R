#' Measure what calling the layer from R costs over calling it from Python
#'
#' Times the same layer on the same inputs (already Python tensors, so no
#' conversion is counted) called through the R function returned by
#' [layer_group_query_attention()] and called directly in Python, alternating
#' the two so that both see the same machine load. Forward calls, eager, on
#' the backend in `KERAS_BACKEND`.
#'
#' @param shapes Named list of input shapes `c(batch, length, features)`. The
#'   default covers a tiny shape, where a fixed per-call cost shows, and the
#'   benchmark suite's shape A.
#' @param rounds Number of alternating R/Python rounds per shape.
#' @param reps Calls timed per round and language.
#' @returns A data frame with one row per shape: median milliseconds per call
#'   from R and from Python, their difference and their ratio.
#' @examplesIf pygqa_available()
#' benchmark(shapes = list(tiny = c(1, 8, 16)), rounds = 3, reps = 20)
#' @seealso `pygqa bench` (the Python benchmark suite) for pygqa against
#'   Keras's layers.
#' @export
benchmark <- function(shapes = list(tiny = c(1, 8, 16), A = c(4, 512, 512)),
                      rounds = 5L, reps = 20L) {
  rounds <- as.integer(rounds)
  reps <- as.integer(reps)
  timing <- reticulate::import("pygqa.bench.timing", convert = TRUE)
  rows <- lapply(names(shapes), function(name) {
    shape <- as.integer(shapes[[name]])
    # The benchmark suite's layer: head_dim 64, 8 query heads sharing 2 key/value heads.
    gqa <- layer_group_query_attention(head_dim = 64, num_query_heads = 8,
                                       num_key_value_heads = 2)
    x <- keras$ops$ones(shape)
    py_layer <- reticulate::r_to_py(gqa)
    per_call <- function(f) {
      start <- proc.time()[["elapsed"]]
      for (i in seq_len(reps)) f()
      (proc.time()[["elapsed"]] - start) / reps
    }
    for (i in 1:3) gqa(x, x)  # warm-up: builds the layer, compiles on jax
    r_times <- py_times <- numeric(rounds)
    for (i in seq_len(rounds)) {
      r_times[i] <- per_call(function() gqa(x, x))
      py_times[i] <- timing$call_overhead(py_layer, inputs = list(x, x), reps = reps,
                                          warmup = 0L)
    }
    r_ms <- 1000 * stats::median(r_times)
    py_ms <- 1000 * stats::median(py_times)
    data.frame(shape = name, batch = shape[1], length = shape[2], features = shape[3],
               r_ms = r_ms, python_ms = py_ms, overhead_ms = r_ms - py_ms,
               ratio = r_ms / py_ms)
  })
  do.call(rbind, rows)
}
