"""The benchmark layer's function in float64 numpy: the yardstick for accuracy.

Under a half-precision policy pygqa and Keras differ from each other by the
rounding each makes, so neither is the other's reference; both are measured
against this one, computed from the same float32 weights and input.
"""

import numpy as np


def gqa_forward(weights, x, causal=False):
    """Self-attention output (batch, T, d_model) of the GQA weights (Keras order, with
    the gate's after the key's where there are ten) on x."""
    weights = [np.asarray(w, np.float64) for w in weights]
    gate_weights = weights[4:6] if len(weights) == 10 else None
    wq, bq, wk, bk, wv, bv, wo, bo = weights[:4] + weights[-4:]
    x = np.asarray(x, np.float64)
    group = wq.shape[1] // wk.shape[1]
    query = np.einsum("btm,muh->btuh", x, wq) + bq
    key = np.repeat(np.einsum("bsm,mvh->bsvh", x, wk) + bk, group, axis=2)
    value = np.repeat(np.einsum("bsm,mvh->bsvh", x, wv) + bv, group, axis=2)
    logits = np.einsum("btuh,bsuh->buts", query, key) / np.sqrt(wq.shape[2])
    if causal:
        length = x.shape[1]
        logits = np.where(np.tri(length, dtype=bool), logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    heads = np.einsum("buts,bsuh->btuh", probabilities, value)
    if gate_weights is not None:
        wg, bg = gate_weights
        heads = heads / (1 + np.exp(-(np.einsum("btm,muh->btuh", x, wg) + bg)))  # sigmoid
    return np.einsum("btuh,uhm->btm", heads, wo) + bo
