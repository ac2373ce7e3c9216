"""The R guide's decoder language model trains exactly like the same model in Python.

The section "A small decoder language model" of the R guide
(r-wrapper/vignettes/pygqa.Rmd) builds a Llama-style decoder (embedding, RMS
norms, grouped-query attention with rotary positions and query/key norms, a
gated MLP) in R and trains it on the demo's place names; it also lists the same
model in Python. This test runs both as the guide has them, so neither can go
stale: the R chunks labelled `decoder-*` in the embedded R session, and the
Python listing in this process.

Both languages run the same float32 Keras code in this process from the same
seed on the same data, so the data, the layer configurations, the loss of
every epoch and every final weight must be equal bit for bit on each backend
(1e-6, the issue's bound, is checked first so that a failure says how far
apart they are).
"""

import contextlib
import json
import re

import keras
import numpy as np
import pytest
from xlang import ATOL, REPO, from_r, max_abs_diff, record

GUIDE = REPO / "r-wrapper" / "vignettes" / "pygqa.Rmd"
R_CHUNKS = ["decoder-data", "decoder-model", "decoder-fit"]
EPOCHS = 10


def guide_code():
    """The section's R chunks (by label, in order) and its one Python listing."""
    text = GUIDE.read_text()
    chunks = re.findall(r"^```\{r (decoder-[\w-]*)\}\n(.*?)^```$", text, re.M | re.S)
    assert [label for label, _ in chunks] == R_CHUNKS, (
        f"{GUIDE.name}: expected the chunks {R_CHUNKS} (plain `{{r <label>}}` headers, run "
        f"when the guide builds); found {[label for label, _ in chunks]}")
    listings = re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)
    assert len(listings) == 1, f"{GUIDE.name}: expected one ```python listing"
    return "".join(code for _, code in chunks), listings[0]


def layer_configs(model_json):
    """(class, config without the name) of each layer: names count layers made before."""
    layers = json.loads(model_json)["config"]["layers"]
    return [(layer["class_name"], {k: v for k, v in layer["config"].items() if k != "name"})
            for layer in layers]


@contextlib.contextmanager
def one_torch_thread():
    """On torch, one thread while both train. Its threads spin while they wait: on two
    busy cores both runs took 60 s with torch's two threads, 6 s with one."""
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(r):
    with one_torch_thread():
        return train_both(r)


def train_both(r):
    r_code, python_code = guide_code()
    env = r.ro.r("new.env(parent = globalenv())")

    def r_value(code):
        return from_r(r.ro.r["eval"](r.ro.r["parse"](text=code), envir=env), r)

    r.ro.r["eval"](r.ro.r["parse"](text=r_code), envir=env)
    from_r_session = dict(
        input_ids=r_value("input_ids"), target_ids=r_value("target_ids"),
        model_json=r_value("decoder$to_json()"),
        losses=r_value("unlist(history$history$loss)"),
        weights=r_value("lapply(decoder$get_weights(), as.array)"))
    listing = {}
    exec(compile(python_code, f"{GUIDE.name} (Python listing)", "exec"), listing)
    model = listing["decoder"]
    from_python = dict(
        input_ids=listing["input_ids"], target_ids=listing["target_ids"],
        model_json=model.to_json(), losses=np.array(listing["history"].history["loss"]),
        weights=model.get_weights(), model=model)
    return dict(r=from_r_session, python=from_python)


def test_the_same_names_and_the_same_model(trained):
    from_r, from_python = trained["r"], trained["python"]
    # R's datasets give the names Python ships, encoded alike.
    np.testing.assert_array_equal(from_r["input_ids"], from_python["input_ids"])
    np.testing.assert_array_equal(from_r["target_ids"], from_python["target_ids"])
    # Layer for layer, the same classes and settings (rotary positions, norms, sizes).
    r_layers, python_layers = (layer_configs(trained[k]["model_json"]) for k in ("r", "python"))
    assert len(r_layers) == len(python_layers)
    for index, ((r_class, r_config), (python_class, python_config)) in enumerate(
            zip(r_layers, python_layers)):
        differences = {key: (r_config.get(key), python_config.get(key))
                       for key in sorted(set(r_config) | set(python_config))
                       if r_config.get(key) != python_config.get(key)}
        assert (r_class, differences) == (python_class, {}), (
            f"layer {index}, {python_class} in Python: (R, Python) values {differences}")
    attention = [config for name, config in python_layers if name == "GroupQueryAttention"]
    assert len(attention) == 2 and all(
        config["rope_max_wavelength"] and config["use_query_key_norm"] for config in attention)


def test_r_and_python_train_to_the_same_losses_and_weights(trained):
    from_r, from_python = trained["r"], trained["python"]
    assert len(from_r["losses"]) == len(from_python["losses"]) == EPOCHS
    loss_diff = record(max_abs_diff(from_r["losses"], from_python["losses"]),
                       "R guide's decoder: losses")
    assert len(from_r["weights"]) == len(from_python["weights"]), "numbers of weights differ"
    weight_diff = record(max(max_abs_diff(a, b) for a, b in
                             zip(from_r["weights"], from_python["weights"])),
                         "R guide's decoder: weights")
    assert loss_diff <= ATOL and weight_diff <= ATOL, (loss_diff, weight_diff)
    np.testing.assert_array_equal(np.asarray(from_r["losses"], np.float32),
                                  np.asarray(from_python["losses"], np.float32))
    for a, b in zip(from_r["weights"], from_python["weights"]):
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)
    # Not vacuous: it learned (each epoch's loss below the one before), and the
    # query/key norm scales are among the weights that training moved.
    losses = from_python["losses"]
    assert np.all(np.diff(losses) < 0), losses
    moved = {w.path.split("/", 1)[1] for w, value in
             zip(from_python["model"].weights, from_python["weights"])
             if np.abs(value - 1).max() > 1e-4}
    assert {"query_norm/scale", "key_norm/scale"} <= moved, moved
