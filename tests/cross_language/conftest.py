"""One embedded R session for the whole pytest run, or a clear failure.

With PYGQA_REQUIRE_R=1 (scripts/test.sh sets it) a missing R, rpy2 or R
package pygqa fails every cross-language test; without it they are skipped.
"""

import os

import pytest
from xlang import RSession


def pytest_collection_modifyitems(items):
    for item in items:
        if "cross_language" in str(item.fspath):
            item.add_marker(pytest.mark.r)


@pytest.fixture(scope="session")
def r():
    try:
        session = RSession()
    except Exception as error:  # ImportError (rpy2), RRuntimeError (package), RuntimeError
        message = f"cross-language tests need R, rpy2 and the R package pygqa: " \
                  f"{type(error).__name__}: {error}"
        if os.environ.get("PYGQA_REQUIRE_R") == "1":
            pytest.fail(f"PYGQA_REQUIRE_R=1 but {message}. Run: bash scripts/setup.sh",
                        pytrace=False)
        pytest.skip(message)
    return session

