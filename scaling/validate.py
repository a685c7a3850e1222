"""Field validation for the frozen config dataclasses: one set of checks, one error format.

Every config (`ModelConfig`, `TrainConfig`, `RunConfig`, `DataConfig`, `SweepConfig`) checks
its fields in `__post_init__` with these helpers, so a bad value fails before anything
compiles, always as

    ValueError("Owner.field=<repr of value>: why")

which names the field and the value (the CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import math
from typing import Any, NoReturn, Sequence


def fail(owner: str, field: str, value: Any, why: str) -> NoReturn:
    raise ValueError(f"{owner}.{field}={value!r}: {why}")


def is_int(value: Any) -> bool:
    """A Python or numpy integer, never a bool (True is an int to Python, not to a config)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(owner: str, field: str, value: Any, *, low: int | None = None, high: int | None = None,
              why: str | None = None) -> None:
    """An int with low <= value <= high (either bound optional)."""
    ok = is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if why is None:
            why = {(1, None): "must be a positive int", (0, None): "must be a non-negative int"}.get(
                (low, high), f"must be an int in [{low if low is not None else '-inf'}, "
                             f"{high if high is not None else 'inf'}]")
        fail(owner, field, value, why)


def check_optional_int(owner: str, field: str, value: Any, *, low: int = 1) -> None:
    if value is not None and not (is_int(value) and value >= low):
        fail(owner, field, value, "must be a positive int or None" if low == 1 else f"must be an int >= {low} or None")


def check_number(owner: str, field: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, why: str | None = None) -> None:
    """A finite number in the interval given by low/high (closed unless *_open)."""
    ok = is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if why is None:
            if low is None and high is None:
                why = "must be a finite number"
            elif high is None:
                why = f"must be a finite number {'>' if low_open else '>='} {low:g}"
                why = {"must be a finite number > 0": "must be a positive finite number",
                       "must be a finite number >= 0": "must be a non-negative finite number"}.get(why, why)
            else:
                lo = "(" if low_open else "["
                hi = ")" if high_open else "]"
                why = f"must be in {lo}{low:g}, {high:g}{hi}"
        fail(owner, field, value, why)


def check_choice(owner: str, field: str, value: Any, choices: Sequence) -> None:
    if value not in tuple(choices):
        fail(owner, field, value, f"must be one of {tuple(choices)}")


def check_str(owner: str, field: str, value: Any, *, optional: bool = False, why: str | None = None) -> None:
    """A non-empty str (or None when optional)."""
    if optional and value is None:
        return
    if not (isinstance(value, str) and value):
        fail(owner, field, value, why or ("must be a non-empty str" + (" or None" if optional else "")))


def check_bool(owner: str, field: str, value: Any) -> None:
    if not isinstance(value, bool):
        fail(owner, field, value, "must be True or False")


def positive_numbers(owner: str, field: str, values: Any, *, integers: bool = False) -> tuple:
    """A sequence of positive finite numbers (ints when `integers`), as a tuple."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        fail(owner, field, values, "must be a sequence")
    values = tuple(values)
    for v in values:
        ok = is_int(v) if integers else is_number(v)
        if not ok or not (v > 0 and math.isfinite(v)):
            fail(owner, field, values, f"{v!r} is not a positive {'int' if integers else 'finite number'}")
    return values


def file_name(owner: str, field: str, value: Any) -> None:
    """A name usable as one path component (run and sweep names become directories)."""
    if not (isinstance(value, str) and value) or "/" in value or value.startswith("."):
        fail(owner, field, value, "must be a non-empty file name (no '/', not starting with '.')")
