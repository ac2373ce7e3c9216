"""The reference page's usage block, parsed into (name, default) pairs.

Defaults are kept as R source text ("0", "TRUE", "NULL", '"zeros"'); a name
without a default maps to None.
"""

import pathlib
import re

HERE = pathlib.Path(__file__).parent
USAGE_FILE = HERE / "data" / "reference_usage.txt"
SHARED_SPEC = HERE.parent.parent / "shared" / "spec" / "layer_group_query_attention.txt"


def parse_usage(text):
    body = text[text.index("(") + 1 : text.rindex(")")]
    params = []
    for item in (part.strip() for part in body.split(",")):
        if not item:
            continue
        name, _, default = (s.strip() for s in item.partition("="))
        params.append((name, default or None))
    return params


def reference_params():
    return parse_usage(USAGE_FILE.read_text())


def r_default_to_python(text):
    """The Python value an R default stands for."""
    if text is None:
        return None
    table = {"TRUE": True, "FALSE": False, "NULL": None}
    if text in table:
        return table[text]
    if re.fullmatch(r'".*"', text):
        return text[1:-1]
    return float(text)
