# Mixed precision from R: a dtype policy through `...`, float32 softmax inside.

for (policy in c("mixed_float16", "mixed_bfloat16")) {
  test_that(sprintf("%s: half-precision output close to float32, rows without keys finite",
                    policy), {
    skip_if_no_pygqa()
    reference <- new_gqa(head_dim = 8, num_query_heads = 4, num_key_value_heads = 2)
    half <- new_gqa(head_dim = 8, num_query_heads = 4, num_key_value_heads = 2,
                    dtype = policy)
    x <- random_array(2, 6, 16)
    reference(x)
    half(x)
    half$set_weights(reference$get_weights())
    mask <- causal(2, 6, 6)
    mask[1, 1, ] <- FALSE  # a query row with no key at all
    got <- half(x, attention_mask = mask)
    expect_identical(keras$backend$standardize_dtype(got$dtype), sub("mixed_", "", policy))
    got <- as.array(got)
    expected <- as.array(reference(x, attention_mask = mask))
    expect_true(all(is.finite(got)))
    # float16 keeps ~3 significant digits, bfloat16 ~2, relative to the output's scale.
    tolerance <- if (policy == "mixed_float16") 1e-2 else 6e-2
    expect_lt(max(abs(got - expected)), tolerance * max(abs(expected)))
  })
}
