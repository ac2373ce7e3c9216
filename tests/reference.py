"""A plain float64 numpy Grouped Query Attention: the oracle the layer is held to.

Written independently of pygqa's code: it repeats key/value heads (the textbook
formulation) instead of grouping query heads, and masks with explicit loops
over nothing but numpy broadcasting.
"""

import numpy as np


def gqa_reference(weights, query, value, key=None, mask=None, causal=False, use_bias=True,
                  sliding_window=None, use_gate=False):
    """Returns (output (b, t, m), probabilities (b, u, t, s)) in float64.

    `weights` is the list from `layer.get_weights()`; `mask` is an optional
    boolean (b, t, s) array (True = attend). `sliding_window` keeps keys with
    |t - s| < sliding_window; `use_gate` reads a gate kernel (and bias) after
    the key's and scales each head's output by sigmoid(query projection).
    """
    key = value if key is None else key
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    per_projection = 2 if use_bias else 1
    gate_weights = None
    if use_gate:  # Keras's order: query, key, gate, value, output
        at = 2 * per_projection
        gate_weights = weights[at : at + per_projection]
        weights = weights[:at] + weights[at + per_projection :]
    if use_bias:
        wq, bq, wk, bk, wv, bv, wo, bo = weights
    else:
        wq, wk, wv, wo = weights
        bq = bk = bv = bo = 0.0
    query, key, value = (np.asarray(x, dtype=np.float64) for x in (query, key, value))
    q = np.einsum("btm,muh->btuh", query, wq) + bq
    k = np.einsum("bsm,mvh->bsvh", key, wk) + bk
    v = np.einsum("bsm,mvh->bsvh", value, wv) + bv
    repeats = q.shape[2] // k.shape[2]
    k = np.repeat(k, repeats, axis=2)  # query head i uses key/value head i // repeats
    v = np.repeat(v, repeats, axis=2)
    logits = np.einsum("btuh,bsuh->buts", q, k) / np.sqrt(q.shape[-1])

    t, s = query.shape[1], key.shape[1]
    keep = np.ones((query.shape[0], t, s), dtype=bool)
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool)
    if causal:
        keep &= np.tril(np.ones((t, s), dtype=bool))
    if sliding_window is not None:
        keep &= np.abs(np.arange(t)[:, None] - np.arange(s)[None]) < sliding_window
    keep = keep[:, None]  # (b, 1, t, s)
    logits = np.where(keep, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    weights_exp = np.where(keep, np.exp(logits - row_max), 0.0)
    total = weights_exp.sum(axis=-1, keepdims=True)
    probs = np.divide(weights_exp, total, out=np.zeros_like(weights_exp), where=total > 0)
    out = np.einsum("buts,bsuh->btuh", probs, v)
    if gate_weights is not None:
        gate_logits = np.einsum("btm,muh->btuh", query, gate_weights[0])
        if use_bias:
            gate_logits = gate_logits + gate_weights[1]
        out = out / (1.0 + np.exp(-gate_logits))
    return np.einsum("btuh,uhm->btm", out, wo) + bo, probs
