"""How a config's values arrive: YAML/JSON files, ``key=value`` override strings, dotted keys, and the
local paths in them made absolute (`absolute_paths`). ``ftkit.config`` builds and checks the typed
`Config` from what these return; everything here works on plain dicts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .data.registry import FILE_SUFFIXES
from .errors import ConfigError


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it (``1`` -> 1, ``5e-4`` -> 0.0005, ``null`` -> None)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. training.epochs=1")
        parsed[key.strip()] = parse_value(value.strip())
    return parsed


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError and json.JSONDecodeError
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values")
    return data


# Config keys that may hold a local path. Data keys may also hold a hub id, model a hub id or a
# built-in name ("default"), so a value becomes a path only when it looks like one. The inputs must exist
# at launch; output.dir is made.
INPUT_PATH_KEYS = ("data.train", "data.validation", "data.test", "model")
PATH_KEYS = (*INPUT_PATH_KEYS, "output.dir")


def absolute_paths(data: Mapping[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """A copy of config ``data`` whose local paths are absolute, read against ``base_dir``.

    A run's folder is not where its paths were written, so every path is fixed before the run's
    config.yaml is written; the worker then reads that file as it is. A value counts as a local
    path when it exists under ``base_dir``, starts with ``.``, ``/`` or ``~``, or (for data) has a
    data file's suffix or a file format is set; hub ids and built-in model names stay as given.
    """
    data = deep_copy(data)
    for key, holder, name, path in _local_paths(data, base_dir, PATH_KEYS):
        holder[name] = str(path)
    return data


def missing_paths(config: Any, base_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The data files and model folder a config (a `Config` or its dict) names that do not exist: dotted key
    -> a message naming the key. Relative paths are read against ``base_dir`` (default: the working folder),
    as at launch; hub ids, built-in model names and notebook variables are not paths and always pass."""
    data = config.to_dict() if hasattr(config, "to_dict") else config
    base = Path(base_dir or os.getcwd())
    missing = {}
    for key, holder, name, path in _local_paths(data, base, INPUT_PATH_KEYS):
        if not path.exists():
            written = holder[name]
            where = str(path) if Path(written).expanduser().is_absolute() else f"{written} in {base}"
            missing[key] = f"'{key}': no file or folder {where}"
    return missing


def _local_paths(data: Mapping[str, Any], base_dir: str | os.PathLike,
                 keys: Iterable[str]) -> Iterator[tuple[str, dict[str, Any], str, Path]]:
    """(dotted key, the dict holding it, its name there, the absolute path) for each of ``keys`` whose value in
    config ``data`` is a local path by `absolute_paths`' rule."""
    base = Path(base_dir)
    sections = {"data": data.get("data") or {}, "output": data.get("output") or {}}
    file_format = (sections["data"].get("format") if isinstance(sections["data"], Mapping) else None)
    for key in keys:
        section, _, name = key.rpartition(".")
        holder = sections[section] if section else data
        if not isinstance(holder, dict) or not isinstance(holder.get(name), str) or not holder[name].strip():
            continue
        value = holder[name]
        if section == "data" and file_format == "hub":
            continue
        path = Path(value).expanduser()
        candidate = path if path.is_absolute() else base / path
        looks_local = (value.startswith((".", "/", "~")) or candidate.exists() or section == "output"
                       or (section == "data" and (file_format is not None or path.suffix.lower() in FILE_SUFFIXES)))
        if looks_local:
            yield key, holder, name, candidate.resolve()


def deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set '{key}': '{part}' is not a section")
        node = child
    if isinstance(value, Mapping) and isinstance(node.get(parts[-1]), dict):
        node[parts[-1]].update(value)
    else:
        node[parts[-1]] = value
