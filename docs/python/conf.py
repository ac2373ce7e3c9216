"""Sphinx configuration of the Python site (bash scripts/run.sh docs builds it)."""

import inspect
import re

import pygqa

project = "pygqa"
release = version = pygqa.__version__
copyright = "the pygqa developers"  # noqa: A001 - Sphinx's name

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"pygqa {release}"
html_static_path = []

# The docstrings are Keras's: Google sections, Markdown-style `code` (so the
# default role is code), and "Call arguments:" laid out like "Args:".
default_role = "code"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Call arguments", "params_style")]
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True  # `head_dim=_REQUIRED`, not an object's address
autodoc_typehints = "none"
autodoc_inherit_docstrings = False  # Keras's own methods stay out of the pages


def _section(lines, title):
    """(start, end) of the indented block under `title:`, or None."""
    if f"{title}:" not in lines:
        return None
    start = lines.index(f"{title}:") + 1
    end = start
    while end < len(lines) and (not lines[end] or lines[end].startswith(" ")):
        end += 1
    return start, end


def _indent(line):
    return len(line) - len(line.lstrip())


def _join_wrapped_names(lines):
    """"head_dim, num_query_heads,\n    bias_constraint, **kwargs: as for ..." as one item."""
    block = _section(lines, "Args")
    if not block:
        return
    i, end = block
    while i < end - 1:
        if re.fullmatch(r" {4}[\w*]+(, [\w*]+)*,", lines[i]) and _indent(lines[i + 1]) == 4:
            # napoleon escapes a leading ** only
            lines[i : i + 2] = [lines[i] + " " + lines[i + 1].strip().replace("**", r"\*\*")]
            end -= 1
        else:
            i += 1


def _open_lists(lines):
    """A "- " list straight under a line of text gets the blank line reST needs."""
    i = 1
    while i < len(lines):
        above, line = lines[i - 1], lines[i]
        if line.lstrip().startswith("- ") and above.strip() and \
                not above.lstrip().startswith("- ") and _indent(above) < _indent(line):
            lines.insert(i, "")
        i += 1


def _named_returns(lines):
    """A Returns block of `name: text` items (the layer returns up to three values,
    named like Keras's) as a list; napoleon would read one value typed by the first name."""
    block = _section(lines, "Returns")
    if not block:
        return
    body = lines[block[0] : block[1]]
    items = [line for line in body if _indent(line) == 4]
    if len(items) < 2 or not all(re.match(r" {4}[a-z_]+: ", line) for line in items):
        return
    converted = []
    for line in body:
        match = re.match(r" {4}([a-z_]+): (.*)", line)
        # "name – text" (a colon would read as a type), continuations under the text
        converted.append(f"    - **{match[1]}** – {match[2]}" if match else line[2:])
    lines[block[0] : block[1]] = converted


def _keras_docstring(app, what, name, obj, options, lines):
    """Keras's docstring layout, read as it is written (before napoleon sees it)."""
    _join_wrapped_names(lines)
    _open_lists(lines)
    _named_returns(lines)


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """A layer's signature is its `__init__`'s: Keras's `Layer.__new__(*args, **kwargs)`
    would otherwise stand for it."""
    if what == "class" and signature == "(*args, **kwargs)":
        parameters = list(inspect.signature(obj.__init__).parameters.values())[1:]
        return str(inspect.Signature(parameters)), return_annotation
    return None


def setup(app):
    app.connect("autodoc-process-signature", _init_signature)
    app.connect("autodoc-process-docstring", _keras_docstring, priority=400)  # before napoleon
