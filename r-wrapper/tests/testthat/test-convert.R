# Conversions: R inputs to NumPy, backend tensors back to R arrays.

test_that("R numbers become float32 NumPy arrays, masks become bool", {
  skip_if_no_pygqa()
  x <- pygqa:::as_py_input(array(1:24, c(2, 3, 4)))
  expect_identical(reticulate::py_to_r(x$dtype$name), "float32")
  expect_identical(unlist(reticulate::py_to_r(x$shape)), c(2L, 3L, 4L))
  expect_true(reticulate::py_to_r(x$flags$c_contiguous))
  m <- pygqa:::as_py_mask(matrix(c(TRUE, FALSE), 2, 2), "query_mask")
  expect_identical(reticulate::py_to_r(m$dtype$name), "bool")
  expect_null(pygqa:::as_py_input(NULL))
  np_x <- reticulate::np_array(1:3)
  expect_identical(pygqa:::as_py_input(np_x), np_x)
})

test_that("as.array() and dim() work on the active backend's tensors", {
  skip_if_no_pygqa()
  x <- random_array(2, 3, 4)
  tensor <- keras$ops$convert_to_tensor(reticulate::np_array(x, dtype = "float32"))
  expect_identical(dim(tensor), c(2L, 3L, 4L))
  expect_equal(as.array(tensor), x, tolerance = 1e-7)
  expect_true(is.double(as.array(tensor)))
  bool <- keras$ops$greater(tensor, 0)
  expect_identical(as.array(bool), x > 0)
  gqa <- new_gqa(head_dim = 2, num_query_heads = 2, num_key_value_heads = 2)
  gqa(x)
  variable <- reticulate::r_to_py(gqa)$weights[[1]]
  expect_identical(dim(as.array(variable)), c(4L, 2L, 2L))
  expect_identical(dim(variable), c(4L, 2L, 2L))
})
