# Which Keras backend the R package expects before Keras is imported; on torch
# it imports torch with its own BLAS bound first (R/torch-blas.R).

test_that("the requested backend comes from KERAS_BACKEND, then keras.json, then the default", {
  home <- withr::local_tempdir()
  withr::local_envvar(KERAS_BACKEND = "jax", KERAS_HOME = home)
  expect_identical(pygqa:::requested_keras_backend(), "jax")

  withr::local_envvar(KERAS_BACKEND = "")
  expect_identical(pygqa:::requested_keras_backend(), "tensorflow")
  writeLines('{\n  "floatx": "float32",\n  "backend": "torch",\n  "epsilon": 1e-07\n}',
             file.path(home, "keras.json"))
  expect_identical(pygqa:::requested_keras_backend(), "torch")
})

test_that("a plain R process on torch gets torch's own matrix products, as Python does", {
  skip_if_no_pygqa()
  if (!reticulate::py_module_available("torch")) {
    if (identical(Sys.getenv("PYGQA_REQUIRE_PYTHON"), "1")) fail("torch is not installed")
    skip("torch is not installed")
  }
  # The same float32 product in a fresh R process (torch must be bound before
  # anything imports it; here Keras imports it, as a user's first call does)
  # and in a plain Python process; each writes it to PYGQA_PRODUCT_OUT.
  product <- withr::local_tempfile(fileext = ".py")
  writeLines(c(
    "import os",
    "import numpy as np",
    "import torch",
    "rng = np.random.default_rng(0)",
    "a = torch.from_numpy(rng.standard_normal((128, 333)).astype('float32'))",
    "b = torch.from_numpy(rng.standard_normal((333, 77)).astype('float32'))",
    "np.save(os.environ['PYGQA_PRODUCT_OUT'], torch.matmul(a, b).numpy())"
  ), product)
  r_script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    "library(pygqa)",
    "invisible(pygqa:::pygqa_module())",
    "reticulate::py_run_file(commandArgs(TRUE)[[1]])"
  ), r_script)
  from_r <- withr::local_tempfile(fileext = ".npy")
  from_python <- withr::local_tempfile(fileext = ".npy")
  withr::with_envvar(c(KERAS_BACKEND = "torch", LD_PRELOAD = "", PYGQA_PRODUCT_OUT = from_r), {
    status <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", r_script, product),
                      stdout = FALSE, stderr = FALSE)
  })
  expect_identical(status, 0L)
  withr::with_envvar(c(PYGQA_PRODUCT_OUT = from_python), {
    status <- system2(reticulate::py_exe(), product, stdout = FALSE, stderr = FALSE)
  })
  expect_identical(status, 0L)
  np <- reticulate::import("numpy", convert = FALSE)
  child <- reticulate::py_to_r(np$load(from_r))
  expect_identical(dim(child), c(128L, 77L))
  expect_identical(child, reticulate::py_to_r(np$load(from_python)))
})
