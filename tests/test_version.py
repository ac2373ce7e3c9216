"""One version for both languages."""

import pathlib

import tomllib

import pygqa

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_python_and_r_versions_agree():
    python_version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    description = (ROOT / "r-wrapper" / "DESCRIPTION").read_text()
    r_version = next(line.split(":", 1)[1].strip() for line in description.splitlines()
                     if line.startswith("Version:"))
    assert python_version == r_version == pygqa.__version__
