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
