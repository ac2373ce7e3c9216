"""The layer called from several Python threads at once gives the sequential results.

Eager calls only, each thread with its own inputs. Most tests build the layer
before the threads start; one lets first calls race on a fresh layer, which
fails for Keras's own layers ("You cannot add new elements of state ...
already built") and which pygqa serialises.

Results are compared bit for bit: measured on all three backends here, the
threaded calls give exactly the sequential numbers (each call's arithmetic
does not depend on what else runs).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import to_numpy

import pygqa

THREADS = 6
ROUNDS = 3  # each thread calls this many times, so calls overlap in every order


def _cases(rng):
    """One input set per thread: two shapes (few on jax, which compiles per shape),
    masks, causal and scores in several combinations."""
    cases = []
    for i in range(THREADS):
        target, source = (7, 5) if i % 2 else (4, 9)
        q = rng.normal(size=(2, target, 8)).astype("float32")
        v = rng.normal(size=(2, source, 8)).astype("float32")
        kwargs = dict(use_causal_mask=bool(i % 3 == 0), return_attention_scores=bool(i % 2))
        if i % 3 == 1:
            mask = rng.random((2, target, source)) < 0.6
            mask[0, 0] = False  # a row with no key
            kwargs["attention_mask"] = mask
        cases.append((q, v, kwargs))
    return cases


def _numpy(result):
    return tuple(to_numpy(r) for r in result) if isinstance(result, tuple) else (to_numpy(result),)


@pytest.fixture
def layer_and_cases(rng):
    layer = pygqa.GroupQueryAttention(4, 8, 2)
    cases = _cases(rng)
    layer(cases[0][0], cases[0][1])  # build before any thread starts
    layer.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                       for w in layer.get_weights()])
    return layer, cases


def test_threads_give_the_sequential_results(layer_and_cases):
    layer, cases = layer_and_cases
    sequential = [_numpy(layer(q, v, **kwargs)) for q, v, kwargs in cases]
    start = threading.Barrier(THREADS)

    def work(case):
        q, v, kwargs = case
        start.wait()  # all threads call at the same moment
        return [_numpy(layer(q, v, **kwargs)) for _ in range(ROUNDS)]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        threaded = list(pool.map(work, cases))

    for i, (expected, rounds) in enumerate(zip(sequential, threaded)):
        for got in rounds:
            assert len(got) == len(expected)
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b, err_msg=f"thread {i}")
    # The cases differ, so a thread reading another's inputs would be caught.
    assert not np.array_equal(sequential[0][0][:, :4], sequential[2][0][:, :4])


def test_threads_training_with_dropout_stay_finite_and_shaped(rng):
    """Dropout draws from one shared seed generator; concurrent draws must not break it."""
    layer = pygqa.GroupQueryAttention(4, 4, 2, dropout=0.5, seed=1)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    layer(x)

    def work(_):
        return to_numpy(layer(x, training=True))

    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(work, range(8)))
    assert all(o.shape == (2, 6, 8) and np.isfinite(o).all() for o in outs)
    inference = to_numpy(layer(x))
    assert any(not np.allclose(o, inference) for o in outs)  # dropout was active


def test_threads_racing_to_build_a_fresh_layer_share_one_set_of_weights(rng):
    layer = pygqa.GroupQueryAttention(4, 8, 2)
    inputs = [rng.normal(size=(2, 5, 8)).astype("float32") for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(x):
        start.wait()  # every thread's first call finds the layer unbuilt
        return to_numpy(layer(x))

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        threaded = list(pool.map(work, inputs))
    assert len(layer.weights) == 8  # one build, not one per thread
    for x, got in zip(inputs, threaded):
        np.testing.assert_array_equal(got, to_numpy(layer(x)))
