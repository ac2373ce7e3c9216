"""The documentation sites build whole: every link, page and example.

`bash scripts/docs.sh` builds both sites once per session into docs/_site
(Sphinx for Python, pkgdown for R; the build itself fails on a Sphinx warning
or an R example that errors). Then: every internal link and local asset of
the built HTML resolves, anchors included; every R export has a reference
page; every name in `pygqa.__all__` has an entry on the Python API page; the R
examples and articles ran and none errored; and headless chromium takes a
screenshot of both front pages (docs/_site/screenshots/; the committed copies
are docs/screenshots/).

A missing chromium, pkgdown or Sphinx skips these tests; with
PYGQA_REQUIRE_DOCS=1 (scripts/test.sh) it fails them.
"""

import ast
import html.parser
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITE = ROOT / "docs" / "_site"
R_PACKAGE = ROOT / "r-wrapper"
EXTERNAL = ("http", "https", "mailto", "data", "javascript")


def _missing_tools():
    missing = []
    if shutil.which("chromium") is None:
        missing.append("chromium (Debian's package chromium)")
    r_has_pkgdown = shutil.which("Rscript") is not None and subprocess.run(
        ["Rscript", "-e", 'quit(status = !requireNamespace("pkgdown", quietly = TRUE))'],
        capture_output=True).returncode == 0
    if not r_has_pkgdown:
        missing.append("the R package pkgdown (Debian's r-cran-pkgdown)")
    for module in ("sphinx", "myst_parser", "furo"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"the Python module {module} (scripts/requirements-dev.txt)")
    return missing


@pytest.fixture(scope="session")
def site():
    missing = _missing_tools()
    if missing:
        message = f"cannot build the documentation sites: missing {', '.join(missing)}; " \
                  "bash scripts/setup.sh installs them"
        if os.environ.get("PYGQA_REQUIRE_DOCS"):
            pytest.fail(message)
        pytest.skip(message + " (PYGQA_REQUIRE_DOCS=1 makes this fail)")
    result = subprocess.run(["bash", "scripts/docs.sh"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"bash scripts/docs.sh failed:\n{result.stdout[-3000:]}{result.stderr[-5000:]}")
    return SITE


class _Page(html.parser.HTMLParser):
    """The ids (anchors) of one HTML page, and the URLs it links to or loads."""

    def __init__(self, path):
        super().__init__(convert_charrefs=True)
        self.ids, self.urls = set(), []
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.urls.append(attrs[key])


def broken_links(root):
    """'page: url (why)' for each internal link or asset under `root` that does not resolve."""
    pages = {}

    def page(path):
        if path not in pages:
            pages[path] = _Page(path)
        return pages[path]

    problems = []
    for path in sorted(root.rglob("*.html")):
        for url in page(path).urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in EXTERNAL or url.startswith("//"):
                continue
            where = f"{path.relative_to(root)}: {url}"
            if parts.scheme == "file" or parts.path.startswith("/"):
                problems.append(f"{where} (a path on the building machine)")
                continue
            if parts.scheme:
                problems.append(f"{where} (not a web link)")
                continue
            target = (path.parent / urllib.parse.unquote(parts.path)).resolve() \
                if parts.path else path.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root.resolve()):
                problems.append(f"{where} (outside the sites)")
            elif not target.is_file():
                problems.append(f"{where} (missing)")
            elif parts.fragment and target.suffix == ".html" and \
                    urllib.parse.unquote(parts.fragment) not in page(target).ids:
                problems.append(f"{where} (no such anchor)")
    return problems


def test_no_broken_link_or_missing_asset(site):
    assert len(list(site.rglob("*.html"))) > 20
    problems = broken_links(site)
    assert not problems, "\n".join(problems)


def test_the_link_checker_finds_what_is_broken(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text('<h2 id="there">b</h2>')
    (tmp_path / "a.html").write_text(
        '<a href="sub/b.html#there">ok</a><a href="https://example.org/x">external</a>'
        '<a href="#top" id="top">ok</a><img src="sub/missing.png">'
        '<a href="sub/b.html#nowhere">x</a><script src="file:///usr/share/x.js"></script>'
        '<a href="../elsewhere.html">x</a><a href="doi:10.1/x">x</a>')
    assert broken_links(tmp_path) == [
        "a.html: sub/missing.png (missing)",
        "a.html: sub/b.html#nowhere (no such anchor)",
        "a.html: file:///usr/share/x.js (a path on the building machine)",
        "a.html: ../elsewhere.html (outside the sites)",
        "a.html: doi:10.1/x (not a web link)",
    ]


def test_every_r_export_has_a_reference_page(site):
    exports = re.findall(r"^export\(([^)]+)\)", (R_PACKAGE / "NAMESPACE").read_text(), re.M)
    assert "layer_group_query_attention" in exports
    topic_of = {}
    for rd in (R_PACKAGE / "man").glob("*.Rd"):
        for alias in re.findall(r"\\alias\{([^}]+)\}", rd.read_text()):
            topic_of[alias] = rd.stem
    index = (site / "r" / "reference" / "index.html").read_text()
    for name in exports:
        assert name in topic_of, f"R export {name} has no documentation (no \\alias in man/)"
        page = site / "r" / "reference" / f"{topic_of[name]}.html"
        assert page.is_file(), f"R export {name}: no reference page {page.name}"
        assert name in page.read_text(), f"R export {name} is not on {page.name}"
        assert f'href="{page.name}"' in index, f"{page.name} is not in the reference index"


def test_every_python_name_has_an_api_entry(site):
    tree = ast.parse((ROOT / "pygqa" / "__init__.py").read_text())
    names = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "__all__")
    assert "GroupQueryAttention" in names
    ids = _Page(site / "python" / "api.html").ids
    missing = [name for name in names if f"pygqa.{name}" not in ids]
    assert not missing, f"not on the API page: {missing}"


def test_r_examples_and_articles_ran_without_an_error(site):
    reference = site / "r" / "reference"
    errored = [page.name for page in reference.glob("*.html") if "r-err" in page.read_text()]
    assert not errored, f"an example errors on {errored}"
    # Run, not only shown: the examples are guarded by @examplesIf pygqa_available().
    assert 'class="r-out' in (reference / "layer_group_query_attention.html").read_text()
    articles = {page.stem: page.read_text() for page in (site / "r" / "articles").glob("*.html")}
    assert {"pygqa", "cross-language", "beyond-keras"} <= set(articles)
    assert "was not available when this guide was built" not in articles["pygqa"]
    for name in ("pygqa", "cross-language", "beyond-keras"):
        assert "#&gt;" in articles[name], f"article {name} shows no output"


@pytest.mark.parametrize("language", ["python", "r"])
def test_front_page_screenshot(site, language):
    from PIL import Image

    shots = site / "screenshots"
    shots.mkdir(exist_ok=True)
    png = shots / f"{language}-site.png"
    png.unlink(missing_ok=True)
    profile = shots / f".chromium-{language}"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,900",
         (site / language / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0 and png.is_file(), result.stderr[-2000:]
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1280, 900)
        histogram = image.convert("L").histogram()
    # Not blank: the commonest grey covers less than 97% of the page, and text and
    # headings give many shades.
    assert max(histogram) < 0.97 * sum(histogram), "the screenshot is (almost) one colour"
    assert sum(count > 0 for count in histogram) > 32
