"""A plain float64 numpy Grouped Query Attention: the oracle the layer is held to.

Written independently of pygqa's code: it repeats key/value heads (the textbook
formulation) instead of grouping query heads, and masks with explicit loops
over nothing but numpy broadcasting.
"""

import numpy as np


def gqa_reference(weights, query, value, key=None, mask=None, causal=False, use_bias=True):
    """Returns (output (b, t, m), probabilities (b, u, t, s)) in float64.

    `weights` is the list from `layer.get_weights()`; `mask` is an optional
    boolean (b, t, s) array (True = attend).
    """
    key = value if key is None else key
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
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
    keep = keep[:, None]  # (b, 1, t, s)
    logits = np.where(keep, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    weights_exp = np.where(keep, np.exp(logits - row_max), 0.0)
    total = weights_exp.sum(axis=-1, keepdims=True)
    probs = np.divide(weights_exp, total, out=np.zeros_like(weights_exp), where=total > 0)
    out = np.einsum("buts,bsuh->btuh", probs, v)
    return np.einsum("btuh,uhm->btm", out, wo) + bo, probs
