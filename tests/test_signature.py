"""The Python signatures follow the reference page: names, order, defaults."""

import inspect

import pytest
from reference_usage import SHARED_SPEC, parse_usage, r_default_to_python, reference_params

import pygqa
from pygqa.compose import _REQUIRED


def _python_params(fn, skip_first=False):
    params = list(inspect.signature(fn).parameters.values())
    return params[1:] if skip_first else params


def test_in_repo_copy_matches_the_shared_reference_page():
    text = SHARED_SPEC.read_text()
    usage = text[text.index("Usage"):text.index("Arguments")]
    assert parse_usage(usage) == reference_params()


@pytest.mark.parametrize(
    "fn, drop_object",
    [(pygqa.layer_group_query_attention, False), (pygqa.GroupQueryAttention, True)],
    ids=["function", "layer"],
)
def test_names_order_and_defaults(fn, drop_object):
    reference = reference_params()
    if drop_object:  # the layer's constructor has no `object`
        reference = reference[1:]
    params = _python_params(fn)
    names = [p.name if p.kind is not p.VAR_KEYWORD else "..." for p in params]
    assert names == [name for name, _ in reference]
    for param, (name, default) in zip(params, reference):
        if name == "...":
            continue
        if default is None and name != "object":
            assert param.default in (inspect.Parameter.empty, _REQUIRED), name
        else:
            assert param.default == r_default_to_python(default), name
