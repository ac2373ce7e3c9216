# A folder named `pygqa` that is not the Python package, ahead of it on the
# Python path, gets a classed error that names where it was found.

test_that("a stray 'pygqa' on the Python path is named by its folder", {
  skip_if_no_pygqa()
  stray <- withr::local_tempdir()
  dir.create(file.path(stray, "pygqa"))
  writeLines("# not the layer package", file.path(stray, "pygqa", "__init__.py"))
  r_script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    "library(pygqa)",
    "result <- tryCatch(pygqa:::pygqa_module(), pygqa_python_missing = function(e) e)",
    "cat(class(result)[[1]], '\\n', conditionMessage(result), '\\n', sep = '')"
  ), r_script)
  output <- system2(file.path(R.home("bin"), "Rscript"), c("--vanilla", r_script),
                    stdout = TRUE, stderr = TRUE, env = paste0("PYTHONPATH=", stray))
  output <- paste(output, collapse = "\n")
  expect_match(output, "pygqa_python_missing", fixed = TRUE)
  expect_match(output, paste0("found in ", file.path(stray, "pygqa"), " is not the Python package"),
               fixed = TRUE)
})
