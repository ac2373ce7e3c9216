test_that("benchmark() times the same layer from R and from Python", {
  skip_if_no_pygqa()
  result <- benchmark(shapes = list(tiny = c(1, 8, 16)), rounds = 2, reps = 3)
  expect_s3_class(result, "data.frame")
  expect_equal(nrow(result), 1)
  expect_named(result, c("shape", "batch", "length", "features", "r_ms", "python_ms",
                         "overhead_ms", "ratio"))
  expect_true(all(result$r_ms > 0 & result$python_ms > 0))
  expect_equal(result$overhead_ms, result$r_ms - result$python_ms)
})
