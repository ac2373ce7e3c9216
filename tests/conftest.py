"""Shared fixtures. The backend is chosen per process with KERAS_BACKEND."""

import json
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402


def pytest_report_header(config):
    """The versions, and the CPU the results hold on: its model, instruction set and, on
    TensorFlow, whether oneDNN is on (it changes rounding and op names)."""
    from pygqa.bench import machine

    switch = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return [
        f"keras {keras.__version__}, backend {keras.backend.backend()}",
        f"CPU: {machine.caption(machine.describe())}"
        + (f" (TF_ENABLE_ONEDNN_OPTS={switch})" if switch is not None else ""),
    ]


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


# Largest differences the tests record (test_user_paths.LARGEST, xlang.LARGEST),
# printed at the end of the run. Under pytest-xdist each worker hands its own
# to the controller, which prints the merged record.
_WORKER_SUMMARIES = []


def _local_summaries():
    user_paths = sys.modules.get("test_user_paths")
    xlang = sys.modules.get("xlang")
    return {
        "user_paths": [[oracle, case, difference] for (oracle, case), difference
                       in getattr(user_paths, "LARGEST", {}).items()],
        "xlang": ([xlang.LARGEST["diff"], xlang.LARGEST["where"]]
                  if xlang is not None and xlang.LARGEST["where"] is not None else None),
    }


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput["pygqa_summaries"] = json.dumps(_local_summaries())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # the xdist controller, as each worker ends
    summaries = getattr(node, "workeroutput", {}).get("pygqa_summaries")
    if summaries:
        _WORKER_SUMMARIES.append(json.loads(summaries))


def pytest_terminal_summary(terminalreporter):
    largest, xlang = {}, None
    for summary in [_local_summaries()] + _WORKER_SUMMARIES:
        for oracle, case, difference in summary["user_paths"]:
            largest[oracle, case] = max(largest.get((oracle, case), 0.0), difference)
        if summary["xlang"] is not None and (xlang is None or summary["xlang"][0] >= xlang[0]):
            xlang = summary["xlang"]
    if largest:
        terminalreporter.write_line(f"user paths ({keras.backend.backend()}): largest differences")
        for (oracle, case), difference in sorted(largest.items()):
            terminalreporter.write_line(f"  {oracle:<28} {case:<22} {difference:.2e}")
    if xlang is not None:
        terminalreporter.write_line(f"cross-language: largest |R - Python| = {xlang[0]:.3g} "
                                    f"({xlang[1]})")
