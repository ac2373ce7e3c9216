# Runs the package's tests during R CMD check. Tests that need Python skip when
# the Python module is missing, or fail when PYGQA_REQUIRE_PYTHON=1 (CI).
library(testthat)
library(pygqa)

test_check("pygqa")
