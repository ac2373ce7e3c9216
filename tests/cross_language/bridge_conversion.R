# R half of test_xlang_conversion.py, sourced into the bridge's environment
# (after bridge.R, whose weights_of() it uses). Written as an R user would:
# R doubles for sizes, R arrays for inputs and weights.

# Builds the source layer in R, gives it `weights`, converts it with R's
# function `convert` ("from_multi_head_attention" or "keras_round_trip"), and
# returns the converted layer's weights and its output on (q, v).
convert_in_r <- function(source, convert, heads, head_dim, use_bias, weights, q, v,
                         num_key_value_heads = NULL) {
  layer <- switch(source,
    mha = keras$layers$MultiHeadAttention(num_heads = as.integer(heads[[1]]),
                                          key_dim = as.integer(head_dim), use_bias = use_bias),
    gqa = layer_group_query_attention(head_dim = head_dim, num_query_heads = heads[[1]],
                                      num_key_value_heads = heads[[2]], use_bias = use_bias),
    stop("unknown source ", source)
  )
  layer(q, v)
  layer$set_weights(weights)
  converted <- switch(convert,
    from_multi_head_attention = from_multi_head_attention(layer, num_key_value_heads),
    keras_round_trip = from_keras(to_keras(layer)),
    stop("unknown conversion ", convert)
  )
  list(weights = weights_of(converted), output = as.array(converted(q, v)),
       class = class(converted)[[1]])
}

# layout_map() from R on a mesh of named CPU devices: its keys, and each
# key's axes with NA for an axis that is not split.
layout_in_r <- function(shape, axis_names, args) {
  devices <- sprintf("cpu:%d", seq_len(prod(shape)) - 1L)
  mesh <- keras$distribution$DeviceMesh(shape = as.list(as.integer(shape)),
                                        axis_names = as.list(axis_names),
                                        devices = devices)
  layouts <- do.call(layout_map, c(list(mesh), args))
  keys <- unlist(reticulate::py_to_r(reticulate::import_builtins()$list(layouts)))
  axes <- lapply(keys, function(key) {
    vapply(reticulate::py_to_r(layouts$get(key)$axes),
           function(a) if (is.null(a)) NA_character_ else a, character(1L))
  })
  list(keys = keys, axes = axes)
}
