"""Signature parity: the reference page, R's formals and Python's signatures agree.

Three sources, compared name by name, in order, with defaults: the reference
page's usage block (tests/data/reference_usage.txt, itself checked against the
shared page), the R function's formals as R reports them through rpy2, and the
Python function's and layer constructor's signatures. The layer's call
arguments are compared too: R's layer function names query, value and key and
takes the rest through `...`, so the rest must be documented in R's help.
"""

import inspect
import re

import pytest
from reference_usage import r_default_to_python, reference_params
from xlang import REPO

import pygqa
from pygqa.compose import _REQUIRED


def _r_formals(r, expression):
    """[(name, default as R source text or None)] of an R function, from R itself."""
    pairs = r.eval(
        f"local({{f <- formals({expression}); "
        "vapply(names(f), function(n) if (identical(f[[n]], quote(expr = ))) '' "
        "else paste(deparse(f[[n]]), collapse = ''), '')})"
    )
    names = r.eval(f"names(formals({expression}))")
    names = [names] if isinstance(names, str) else list(names)
    defaults = [pairs] if isinstance(pairs, str) else list(pairs)
    return [(str(n), str(d) or None) for n, d in zip(names, defaults)]


def _py_params(fn):
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            out.append(("...", None))
        else:
            missing = p.default in (inspect.Parameter.empty, _REQUIRED)
            out.append((p.name, None if missing else p.default))
    return out


def test_r_function_formals_are_the_reference_usage(r):
    assert _r_formals(r, "pygqa::layer_group_query_attention") == reference_params()


@pytest.mark.parametrize("fn, drop_object", [
    (pygqa.layer_group_query_attention, False),
    (pygqa.GroupQueryAttention, True),
], ids=["function", "layer"])
def test_python_signature_is_the_r_signature(r, fn, drop_object):
    r_params = _r_formals(r, "pygqa::layer_group_query_attention")
    if drop_object:
        r_params = r_params[1:]
    py_params = _py_params(fn)
    assert [name for name, _ in py_params] == [name for name, _ in r_params]
    for (name, py_default), (_, r_default) in zip(py_params, r_params):
        if name in ("...", "object"):
            continue
        assert py_default == r_default_to_python(r_default), name
        # Same type as well as value: R's 0 is Python's 0.0, TRUE is True.
        assert type(py_default) is type(r_default_to_python(r_default)), name


def test_r_layer_call_matches_python_call(r):
    layer_formals = _r_formals(
        r, "pygqa::layer_group_query_attention(head_dim = 1, num_query_heads = 1, "
           "num_key_value_heads = 1)")
    call_params = _py_params(pygqa.GroupQueryAttention.call)[1:]  # without self
    assert layer_formals[:3] == [("query", None), ("value", "NULL"), ("key", "NULL")]
    assert [(n, d) for n, d in call_params[:3]] == [("query", None), ("value", None),
                                                   ("key", None)]
    assert layer_formals[3:] == [("...", None)]
    rd = (REPO / "r-wrapper" / "man" / "layer_group_query_attention.Rd").read_text()
    section = rd[rd.index("Call Arguments"):]
    for name, _ in call_params[3:]:
        assert re.search(rf"\\code{{{name}}}", section), f"R help lacks call argument {name}"


def test_every_r_argument_is_documented(r):
    rd = (REPO / "r-wrapper" / "man" / "layer_group_query_attention.Rd").read_text()
    documented = set(re.findall(r"^\\item\{([^}]+)\}\{", rd, flags=re.M))
    for name, _ in reference_params():
        assert name in documented, name
