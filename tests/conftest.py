"""Shared fixtures. The backend is chosen per process with KERAS_BACKEND."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


def pytest_sessionstart(session):
    required = [b for b in os.environ.get("PYGQA_REQUIRE_BACKENDS", "").split(",") if b]
    backend = keras.backend.backend()
    if required and backend not in required:
        raise pytest.UsageError(
            f"KERAS_BACKEND={backend} is not one of PYGQA_REQUIRE_BACKENDS={required}"
        )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter):
    user_paths = sys.modules.get("test_user_paths")
    if user_paths is None or not user_paths.LARGEST:
        return
    terminalreporter.write_line(f"user paths ({keras.backend.backend()}): largest differences")
    for (oracle, case), difference in sorted(user_paths.LARGEST.items()):
        terminalreporter.write_line(f"  {oracle:<28} {case:<22} {difference:.2e}")
