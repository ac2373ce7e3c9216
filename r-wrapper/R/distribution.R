#' Shard attention heads over several devices
#'
#' @description
#' Returns a Keras `LayoutMap` that splits the layer's attention heads over
#' the devices of a device mesh, for `keras$distribution$ModelParallel()` on
#' the JAX backend. The query, key and value kernels and biases are split
#' along their head axis and the output kernel along its query-head axis, so
#' every device holds and computes whole heads (the layout of Megatron-LM).
#' The layer itself is unchanged: the same code runs on one device, on
#' several CPU or GPU devices of one machine, or on a TPU slice, and gives the
#' same numbers up to float rounding.
#'
#' A head axis can only be split evenly. When `num_query_heads` is given and
#' the model axis's size does not divide it, `layout_map()` signals an error.
#' When `num_key_value_heads` is given and not divisible (2 key/value heads on
#' 4 devices, say), the key and value projections are copied to every device
#' instead of split. Without head counts every head axis is split, and JAX
#' refuses a count that does not divide when the layer is built.
#'
#' Create the layer after setting the distribution (with
#' `keras$distribution$set_distribution()`): weights are placed on the
#' devices when they are created.
#'
#' @param device_mesh A `keras$distribution$DeviceMesh()`, for example
#'   `keras$distribution$DeviceMesh(shape = c(2L, 2L), axis_names =
#'   c("batch", "model"))`.
#' @param model_axis Name of the mesh axis that splits the heads.
#' @param num_query_heads Optional number of query heads (a whole number),
#'   checked against the size of the model axis.
#' @param num_key_value_heads Optional number of key/value heads (a whole
#'   number); when the size of the model axis does not divide it, the key and
#'   value projections are replicated.
#' @param layer_name Optional name of the one layer to shard. By default the
#'   layout applies to every attention layer with projections named `query`,
#'   `key`, `value` and `attention_output` (Keras's multi-head and grouped
#'   query attention layers included).
#'
#' @returns A Python `keras.distribution.LayoutMap` on `device_mesh`; its keys
#'   are regular expressions over variable paths. Give it to
#'   `keras$distribution$ModelParallel(layout_map = ..., batch_dim_name =
#'   "batch")`, or add other layers' layouts with its `update()` method.
#'
#' @examplesIf pygqa_available()
#' # A mesh of 4 devices named by hand; on a real machine leave `devices`
#' # out and Keras lists them (JAX backend).
#' mesh <- keras$distribution$DeviceMesh(shape = c(1L, 4L),
#'                                       axis_names = c("batch", "model"),
#'                                       devices = sprintf("cpu:%d", 0:3))
#' layouts <- layout_map(mesh, num_query_heads = 8, num_key_value_heads = 2)
#' layouts$get("gqa/query/kernel")$axes
#' layouts$get("gqa/key/kernel")$axes  # 2 key/value heads on 4 devices: copied
#' @seealso [layer_group_query_attention()]; Keras's distribution guide
#'   (<https://keras.io/guides/distribution/>).
#' @export
layout_map <- function(device_mesh, model_axis = "model", num_query_heads = NULL,
                       num_key_value_heads = NULL, layer_name = NULL) {
  call <- sys.call()
  if (missing(device_mesh)) {
    stop(pygqa_condition("layout_map() is missing required argument(s): `device_mesh`",
                         "pygqa_argument_error", call, argument = "device_mesh"))
  }
  args <- mget(setdiff(names(match.call())[-1L], ""), envir = environment())
  for (name in intersect(names(args), c("num_query_heads", "num_key_value_heads"))) {
    if (!is.null(args[[name]])) args[[name]] <- as_whole_number(args[[name]], name, call = call)
  }
  with_python_errors(do.call(pygqa_module()$layout_map, args), call)
}
