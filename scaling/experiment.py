"""Experiment files and `--set key=value` overrides, for every command.

Config as code (as big_vision and the Flax examples do): an experiment file is Python with a
`get_config()` returning a `RunConfig` (`scaling train`) or a `SweepConfig` (`scaling sweep`).

    cfg = load("experiments/cpu_tiny.py", ["train.lr=3e-4", "model.d_model=128"], expect=RunConfig)

Overrides are applied all together and the result is validated once: the configs check
fields against each other (`d_model` divisible by `n_heads`; `data.name` required when
`data.source="tfds"`), so validating after each assignment would make their order matter
(`--set model.n_heads=6 --set model.d_model=96` would fail, the reverse order would not).
Unknown keys and values of the wrong type are still rejected one by one, by name, and a
config that is invalid as a whole names the field and value that break it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Sequence


def load_experiment(path: str | Path, **kwargs) -> Any:
    """Import an experiment file and return its `get_config(**kwargs)`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"experiment={str(path)!r}: no such file")
    spec = importlib.util.spec_from_file_location(f"scaling_experiment_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"experiment={str(path)!r}: defines no get_config()")
    return module.get_config(**kwargs)


def load(path: str | Path, assignments: Sequence[str] = (), *, expect: type | None = None) -> Any:
    """An experiment file's config with `--set` overrides applied; `expect` is the config class
    the command needs (RunConfig or SweepConfig)."""
    cfg = load_experiment(path)
    if expect is not None and not isinstance(cfg, expect):
        raise ValueError(f"experiment={str(path)!r}: get_config() must return a {expect.__name__}, "
                         f"got {type(cfg).__name__}")
    return override(cfg, assignments)


def parse_value(text: str):
    """A Python literal (numbers, tuples, None, True, quoted strings), else the bare string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # bare strings: --set data.source=synthetic


def _coerce(field: dataclasses.Field, key: str, value):
    """Check `value` against the field's declared type, converting the harmless cases."""
    declared = str(field.type)
    if "tuple" in declared and isinstance(value, (list, tuple)):
        return tuple(value)
    if declared.startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if declared.startswith("int") and isinstance(value, float) and value.is_integer() and "float" not in declared:
        return int(value)  # 1e6 tokens
    if declared.startswith("bool") and not isinstance(value, bool):
        raise ValueError(f"--set {key}={value!r}: must be True or False")
    return value


def _field(node, parts: list[str], key: str) -> dataclasses.Field:
    """The dataclass field `parts` names below `node`; unknown keys fail naming the known ones."""
    for depth, head in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            raise ValueError(f"--set {key}: {type(node).__name__} has no fields")
        fields = {f.name: f for f in dataclasses.fields(node)}
        if head not in fields:
            raise ValueError(f"--set {key}: unknown key {head!r} in {type(node).__name__} "
                             f"(known: {', '.join(sorted(fields))})")
        if depth == len(parts) - 1:
            return fields[head]
        node = getattr(node, head)
    raise AssertionError("unreachable")


def override(cfg, assignments: Sequence[str]):
    """Apply 'a.b=value' assignments to a tree of frozen dataclasses, then validate once."""
    changes: dict = {}
    applied = []
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set {assignment!r}: expected key=value")
        key, text = (s.strip() for s in assignment.split("=", 1))
        parts = key.split(".")
        value = _coerce(_field(cfg, parts, key), key, parse_value(text))
        node = changes
        for head in parts[:-1]:
            if not isinstance(node.get(head, {}), dict):  # "a=..." then "a.b=...": the later wins
                node[head] = {}
            node = node.setdefault(head, {})
        node[parts[-1]] = value
        applied.append(f"{key}={value!r}")
    if not changes:
        return cfg
    try:
        return _rebuild(cfg, changes)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{e} (with --set {', '.join(applied)})") from None


def _rebuild(node, changes: dict):
    kwargs = {name: _rebuild(getattr(node, name), change) if isinstance(change, dict) else change
              for name, change in changes.items()}
    return dataclasses.replace(node, **kwargs)


def from_dict(cls: type, data: dict):
    """Rebuild a config tree (`RunConfig`, `SweepConfig`, ...) from its `to_dict` / JSON form:
    nested configs from their dicts, tuples from JSON lists; validated as it is built. Unknown
    keys fail by name (a file written by another version of the library)."""
    import typing

    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a dict, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value)
        elif "tuple" in str(hint) and isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
