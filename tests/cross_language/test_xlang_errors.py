"""Error parity: each bad input fails in both languages with the same essential message.

"Essential" means the argument's name and the value (or shape) received. Most
rows expect the very same words in both messages; where the languages print a
value differently (R's "4" and TRUE, Python's '4' and True) the row gives each
language's spelling. In R every error must be a `pygqa_error`; when the error
was raised in Python, R's `python_type` must be Python's exception type.

Each row: id, Python code, R code (R-native values), substrings both messages
contain, Python-only substrings, R-only substrings. `L` is
layer_group_query_attention in both languages; `gqa` a layer built for 8
features, `q` (2, 7, 8), `v` (2, 5, 8), `x(...)` random inputs of a shape.
"""

import keras
import numpy as np
import pytest

import pygqa

K = "num_query_heads = 4, num_key_value_heads = 2"  # R
KP = "num_query_heads=4, num_key_value_heads=2"  # Python

ERRORS = [
    ("head_dim-fraction", f"L(head_dim=4.5, {KP})", f"L(head_dim = 4.5, {K})",
     ["`head_dim`", "head_dim=4.5"], [], []),
    ("head_dim-zero", f"L(head_dim=0, {KP})", f"L(head_dim = 0, {K})",
     ["`head_dim`", "head_dim=0"], [], []),
    ("head_dim-negative", f"L(head_dim=-1, {KP})", f"L(head_dim = -1, {K})",
     ["`head_dim`", "head_dim=-1"], [], []),
    ("head_dim-string", f"L(head_dim='4', {KP})", f'L(head_dim = "4", {K})',
     ["`head_dim`"], ["head_dim='4'"], ['head_dim="4"']),
    ("head_dim-logical", f"L(head_dim=True, {KP})", f"L(head_dim = TRUE, {K})",
     ["`head_dim`"], ["head_dim=True"], ["head_dim=TRUE"]),
    ("head_dim-null", f"L(head_dim=None, {KP})", f"L(head_dim = NULL, {K})",
     ["`head_dim`"], ["head_dim=None"], ["head_dim=NULL"]),
    ("head_dim-nan", f"L(head_dim=float('nan'), {KP})", f"L(head_dim = NaN, {K})",
     ["`head_dim`"], ["head_dim=nan"], ["head_dim=NaN"]),
    ("query_heads-fraction", "L(head_dim=4, num_query_heads=2.5, num_key_value_heads=1)",
     "L(head_dim = 4, num_query_heads = 2.5, num_key_value_heads = 1)",
     ["`num_query_heads`", "num_query_heads=2.5"], [], []),
    ("query_heads-zero", "L(head_dim=4, num_query_heads=0, num_key_value_heads=1)",
     "L(head_dim = 4, num_query_heads = 0, num_key_value_heads = 1)",
     ["`num_query_heads`", "num_query_heads=0"], [], []),
    ("kv_heads-negative", "L(head_dim=4, num_query_heads=4, num_key_value_heads=-2)",
     "L(head_dim = 4, num_query_heads = 4, num_key_value_heads = -2)",
     ["`num_key_value_heads`", "num_key_value_heads=-2"], [], []),
    ("kv_heads-vector", "L(head_dim=4, num_query_heads=4, num_key_value_heads=[2, 4])",
     "L(head_dim = 4, num_query_heads = 4, num_key_value_heads = c(2, 4))",
     ["`num_key_value_heads`"], ["num_key_value_heads=[2, 4]"], ["num_key_value_heads=c(2, 4)"]),
    ("heads-not-divisible", "L(head_dim=4, num_query_heads=6, num_key_value_heads=4)",
     "L(head_dim = 4, num_query_heads = 6, num_key_value_heads = 4)",
     ["divides `num_query_heads`", "num_query_heads=6, num_key_value_heads=4"], [], []),
    ("dropout-one", f"L(head_dim=4, {KP}, dropout=1.0)", f"L(head_dim = 4, {K}, dropout = 1)",
     ["`dropout`", "[0, 1)", "dropout=1.0"], [], []),
    ("dropout-negative", f"L(head_dim=4, {KP}, dropout=-0.1)",
     f"L(head_dim = 4, {K}, dropout = -0.1)", ["`dropout`", "dropout=-0.1"], [], []),
    ("dropout-string", f"L(head_dim=4, {KP}, dropout='0.1')",
     f'L(head_dim = 4, {K}, dropout = "0.1")', ["`dropout`", "dropout='0.1'"], [], []),
    ("use_bias-string", f"L(head_dim=4, {KP}, use_bias='yes')",
     f'L(head_dim = 4, {K}, use_bias = "yes")', ["`use_bias`", "use_bias='yes'"], [], []),
    ("use_bias-number", f"L(head_dim=4, {KP}, use_bias=1.0)",
     f"L(head_dim = 4, {K}, use_bias = 1)", ["`use_bias`", "use_bias=1.0"], [], []),
    ("seed-fraction", f"L(head_dim=4, {KP}, seed=1.5)", f"L(head_dim = 4, {K}, seed = 1.5)",
     ["`seed`", "seed=1.5"], [], []),
    ("seed-negative", f"L(head_dim=4, {KP}, seed=-3)", f"L(head_dim = 4, {K}, seed = -3)",
     ["`seed`", "seed=-3"], [], []),
    ("unknown-keyword", f"L(head_dim=4, {KP}, window=4)",
     f"L(head_dim = 4, {K}, window = 4)",
     ["unknown keyword", "window=4"], [], []),
    ("sliding_window-zero", f"L(head_dim=4, {KP}, sliding_window=0)",
     f"L(head_dim = 4, {K}, sliding_window = 0)",
     ["`sliding_window`", "sliding_window=0"], [], []),
    ("use_gate-string", f"L(head_dim=4, {KP}, use_gate='yes')",
     f'L(head_dim = 4, {K}, use_gate = "yes")', ["`use_gate`", "use_gate='yes'"], [], []),
    ("unnamed-dots", "L(None, 4, 4, 2, 0.0, True, 'glorot_uniform', 'zeros', None, None, None, "
                     "None, None, 3)",
     'L(NULL, 4, 4, 2, 0, TRUE, "glorot_uniform", "zeros", NULL, NULL, NULL, NULL, NULL, 3)',
     [], ["positional arguments but 14 were given"], ["`...`", "must be named", "1 unnamed"]),
    ("head_dim-missing", f"L({KP})", f"L({K})",
     ["missing required argument(s): `head_dim`"], [], []),
    ("initializer-unknown", f"L(head_dim=4, {KP}, kernel_initializer='nope')",
     f'L(head_dim = 4, {K}, kernel_initializer = "nope")', ["initializer", "nope"], [], []),
    ("object-string", "L('text', 4, 4, 2)", 'L("text", 4, 4, 2)',
     ["`object`"], ["object of type str"], ["object of class character"]),
    ("object-empty-list", "L([], 4, 4, 2)", "L(list(), 4, 4, 2)",
     ["`object`", "1 to 3 tensors", "a list of length 0"], [], []),
    ("object-long-list", "L([q, v, v, v], 4, 4, 2)", "L(list(q, v, v, v), 4, 4, 2)",
     ["`object`", "1 to 3 tensors", "a list of length 4"], [], []),
    ("object-functional-model", "L(functional(), 4, 4, 2)", "L(functional(), 4, 4, 2)",
     ["`object`", "functional or subclassed model cannot have a layer added"], [], []),
    ("query-rank-2", "gqa(x(2, 8))", "gqa(x(2, 8))",
     ["`query`", "rank 3", "query.shape=(2, 8)"], [], []),
    ("value-rank-4", "gqa(q, x(2, 5, 8, 1))", "gqa(q, x(2, 5, 8, 1))",
     ["`value`", "rank 3", "value.shape=(2, 5, 8, 1)"], [], []),
    ("key-value-length", "gqa(q, v, x(2, 6, 8))", "gqa(q, v, x(2, 6, 8))",
     ["`key` and `value`", "key.shape=(2, 6, 8), value.shape=(2, 5, 8)"], [], []),
    ("query-value-batch", "gqa(q, x(3, 5, 8), x(3, 5, 8))", "gqa(q, x(3, 5, 8), x(3, 5, 8))",
     ["`query` and `value`", "query.shape=(2, 7, 8), value.shape=(3, 5, 8)"], [], []),
    ("query-empty", "gqa(x(2, 0, 8))", "gqa(x(2, 0, 8))",
     ["`query`", "non-empty", "query.shape=(2, 0, 8)"], [], []),
    ("query-other-features", "gqa(x(1, 3, 6))", "gqa(x(1, 3, 6))",
     ["built for 8 features in `query`", "query.shape=(1, 3, 6)"], [], []),
    ("query_mask-shape", "gqa(q, v, query_mask=np.ones((2, 5), bool))",
     "gqa(q, v, query_mask = array(TRUE, c(2, 5)))",
     ["`query_mask`", "(2, 7)", "query_mask.shape=(2, 5)"], [], []),
    ("attention_mask-shape", "gqa(q, v, attention_mask=np.ones((2, 5, 7), bool))",
     "gqa(q, v, attention_mask = array(TRUE, c(2, 5, 7)))",
     ["`attention_mask`", "(2, 7, 5)", "attention_mask.shape=(2, 5, 7)"], [], []),
    ("call-unknown-keyword", "gqa(q, v, unknown_arg=True)", "gqa(q, v, unknown_arg = TRUE)",
     ["unexpected keyword argument 'unknown_arg'"], [], []),
    # Missing values: Python's None/nan, R's NA/NaN (refused in R before Python runs).
    ("head_dim-missing-value", f"L(head_dim=None, {KP})", f"L(head_dim = NA, {K})",
     ["`head_dim`", "positive integer"], ["head_dim=None"], ["head_dim=NA"]),
    ("head_dim-infinite", f"L(head_dim=float('inf'), {KP})", f"L(head_dim = Inf, {K})",
     ["`head_dim`", "positive integer"], ["head_dim=inf"], ["head_dim=Inf"]),
    ("dropout-nan", f"L(head_dim=4, {KP}, dropout=float('nan'))",
     f"L(head_dim = 4, {K}, dropout = NaN)", ["`dropout`", "[0, 1)"], ["dropout=nan"],
     ["dropout=NaN"]),
    ("use_bias-missing-value", f"L(head_dim=4, {KP}, use_bias=None)",
     f"L(head_dim = 4, {K}, use_bias = NA)", ["`use_bias`"], ["use_bias=None"], ["use_bias=NA"]),
    ("seed-missing-value", f"L(head_dim=4, {KP}, seed=float('nan'))",
     f"L(head_dim = 4, {K}, seed = NA)", ["`seed`", "non-negative integer"], ["seed=nan"],
     ["seed=NA"]),
    ("query-none", "gqa(query=None, value=v)", "gqa(NULL, v)",
     ["`query`", "query=None of type NoneType"], [], []),
    ("query-string", "gqa(query='abc', value=v)", 'gqa("abc", v)',
     ["`query`"], ["query='abc'"], ['query="abc"']),
    ("query-empty-batch", "gqa(x(0, 7, 8))", "gqa(x(0, 7, 8))",
     ["`query`", "non-empty batch", "query.shape=(0, 7, 8)"], [], []),
    ("attention_mask-additive", "gqa(q, v, attention_mask=np.where(np.ones((2, 7, 5)), 0.0, "
     "-np.inf))", "gqa(q, v, attention_mask = array(c(0, -Inf), c(2, 7, 5)))",
     ["`attention_mask`", "additive"], ["attention_mask.dtype=float"], ["mask == 0"]),
    ("value_mask-string", "gqa(q, v, value_mask='yes')", 'gqa(q, v, value_mask = "yes")',
     ["`value_mask`"], ["value_mask='yes'"], ['value_mask="yes"']),
]


def _python_env():
    rng = np.random.default_rng(3)

    def x(*shape):
        return rng.uniform(-1, 1, size=shape).astype(np.float32)

    def functional():
        inputs = keras.Input((3, 4))
        return keras.Model(inputs, keras.layers.Dense(4)(inputs))

    gqa = pygqa.GroupQueryAttention(4, 4, 2)
    q, v = x(2, 7, 8), x(2, 5, 8)
    gqa(q, v)
    return dict(L=pygqa.layer_group_query_attention, gqa=gqa, q=q, v=v, x=x, np=np,
                functional=functional)


@pytest.fixture(scope="module")
def r_error_env(r):
    return r.raw("error_env()")


def test_table_size():
    assert len(ERRORS) >= 30


@pytest.mark.parametrize("py_code, r_code, both, py_only, r_only",
                         [row[1:] for row in ERRORS], ids=[row[0] for row in ERRORS])
def test_same_essential_message(r, r_error_env, py_code, r_code, both, py_only, r_only):
    with pytest.raises((TypeError, ValueError)) as raised:
        eval(py_code, _python_env())  # noqa: S307 - the table's own code
    py_message = str(raised.value)
    from_r = r.fn("error_of")(r_code, r_error_env)
    r_classes = list(np.atleast_1d(from_r["classes"]))
    assert "pygqa_error" in r_classes, (r_code, r_classes, from_r["message"])
    r_message = from_r["message"]
    for text in both + py_only:
        assert text in py_message, (text, py_message)
    for text in both + r_only:
        assert text in r_message, (text, r_message)
    assert "Traceback" not in r_message and "py_last_error" not in r_message
    if from_r.get("python_type"):  # raised in Python: same exception type in both
        assert from_r["python_type"] == type(raised.value).__name__
