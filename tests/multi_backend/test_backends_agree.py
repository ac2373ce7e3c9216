"""tensorflow, jax and torch give the same numbers for the same weights and inputs."""

import os
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax", "torch")
WORKER = os.path.join(os.path.dirname(__file__), "backend_worker.py")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("backends")
    data = dict(
        query=rng.normal(size=(2, 9, 24)).astype("float32"),
        value=rng.normal(size=(2, 13, 20)).astype("float32"),
        attention_mask=rng.random((2, 9, 13)) < 0.6,
    )
    shapes = [(24, 8, 8), (8, 8), (20, 2, 8), (2, 8), (20, 2, 8), (2, 8), (8, 8, 24), (24,)]
    for i, shape in enumerate(shapes):
        data[f"w{i}"] = rng.normal(scale=0.3, size=shape).astype("float32")
    inputs = folder / "inputs.npz"
    np.savez(inputs, **data)
    results = {}
    for backend in BACKENDS:
        out = folder / f"{backend}.npz"
        env = dict(os.environ, KERAS_BACKEND=backend)
        subprocess.run([sys.executable, WORKER, str(inputs), str(out)], env=env, check=True)
        results[backend] = dict(np.load(out))
    return results


@pytest.mark.parametrize("case", ["plain", "causal", "masked", "plain_scores",
                                  "causal_scores", "masked_scores"])
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_matches_tensorflow(outputs, backend, case):
    np.testing.assert_allclose(outputs[backend][case], outputs["tensorflow"][case],
                               atol=2e-6, rtol=1e-5)
