"""Saved pygqa layers: the version recorded in their config, and reading `.keras` files.

Policy: a layer config records the pygqa version that wrote it. While pygqa is
0.x a minor release may change what the config holds, so a config written by
another major.minor version is refused with a message that names both versions.
A config without a recorded version (written before the key existed) loads.
"""

import functools
import json
import os
import re
import zipfile
from importlib.metadata import PackageNotFoundError, version

import keras

VERSION_KEY = "pygqa_version"


@functools.cache  # read the package metadata once, not at every get_config()
def installed_version():
    """pygqa's installed version, the one `__version__` and saved configs show."""
    try:
        return version("pygqa")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _major_minor(text):
    match = re.match(r"^(\d+)\.(\d+)(\.|$)", text)
    return None if match is None else (int(match[1]), int(match[2]))


def check_version(recorded, installed=None):
    """Raises a ValueError if a config written by pygqa `recorded` cannot be read here."""
    if recorded is None:
        return
    installed = installed_version() if installed is None else installed
    if not isinstance(recorded, str) or _major_minor(recorded) is None:
        raise ValueError(
            f"Received an invalid value for `{VERSION_KEY}`: expected a version string such "
            f"as '{installed}' in the saved layer's config. Received: "
            f"{VERSION_KEY}={recorded!r}. The file is damaged or was not written by pygqa."
        )
    ours = _major_minor(installed)
    if ours is None or _major_minor(recorded) == ours:
        return  # an uninstalled source tree cannot tell; same major.minor is compatible
    wanted = "%d.%d" % ours
    theirs = "%d.%d" % _major_minor(recorded)
    raise ValueError(
        f"Received an invalid value for `{VERSION_KEY}`: expected a layer saved by pygqa "
        f"{wanted}.x, the installed version ({installed}); 0.x minor releases may change "
        f"the saved layout. Received: {VERSION_KEY}={recorded!r}. Load the file with pygqa "
        f"{theirs}.x (pip install 'pygqa=={theirs}.*'), or rebuild the model with pygqa "
        f"{installed} and set its weights from the old one."
    )


def _recorded_versions(node):
    """Every pygqa version recorded in a saved model's config (nested models included)."""
    if isinstance(node, dict):
        if isinstance(node.get("config"), dict) and VERSION_KEY in node["config"]:
            yield node["config"][VERSION_KEY]
        for child in node.values():
            yield from _recorded_versions(child)
    elif isinstance(node, list):
        for child in node:
            yield from _recorded_versions(child)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keras.saving.load_model` for `.keras` files, with clear errors for bad files.

    Keras reports a truncated or non-zip `.keras` file as "File not found", and
    damaged contents as raw h5py or JSON errors. Here every such case is a
    ValueError that names the file and says what is wrong with it, and a file
    from an incompatible pygqa version is refused before anything is built.

    Args:
        filepath: Path of a `.keras` file.
        custom_objects, compile, safe_mode: As for `keras.saving.load_model`.

    Returns:
        The model.

    Raises:
        ValueError: the file is missing, not a `.keras` file, damaged, or was
            written by an incompatible pygqa version.
    """
    path = os.fspath(filepath)
    if not str(path).endswith(".keras"):
        raise ValueError(
            "Received an invalid value for `filepath`: expected a path ending in `.keras` "
            f"(a model saved with `model.save()`). Received: filepath={path!r}"
        )
    if not os.path.isfile(path):
        raise ValueError(
            "Received an invalid value for `filepath`: expected an existing `.keras` file. "
            f"Received: filepath={path!r}, which does not exist"
        )
    damaged = (
        f"Received an invalid value for `filepath`: expected a complete `.keras` file. "
        f"Received: filepath={path!r}, which is damaged or truncated"
    )
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{damaged} (it is not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ValueError(f"{damaged} (config.json: {error})") from error
    for recorded in _recorded_versions(config):
        check_version(recorded)
    try:
        return keras.saving.load_model(
            path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
        )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(
            "Received an invalid value for `filepath`: expected a `.keras` file that Keras can "
            f"load. Received: filepath={path!r}, which failed to load (the file may be damaged "
            f"or truncated): {type(error).__name__}: {error}"
        ) from error
