"""One set of field validators, one error format: `Owner.field=<value>: why`."""

import math

import pytest

from scaling import validate as v


def test_ints_reject_bools_floats_and_out_of_range():
    v.check_int("C", "n", 3, low=1)
    for bad in (0, True, 2.0, "3", None):
        with pytest.raises(ValueError, match=rf"^C\.n={bad!r}: must be a positive int$".replace("(", r"\(")):
            v.check_int("C", "n", bad, low=1)
    with pytest.raises(ValueError, match=r"C\.n=-1: must be a non-negative int"):
        v.check_int("C", "n", -1, low=0)
    with pytest.raises(ValueError, match=r"must be an int in \[2, 10\]"):
        v.check_int("C", "n", 11, low=2, high=10)
    v.check_optional_int("C", "n", None)
    with pytest.raises(ValueError, match="positive int or None"):
        v.check_optional_int("C", "n", 0)


def test_numbers_check_finiteness_and_open_or_closed_bounds():
    v.check_number("C", "x", 0.5, low=0, high=1, high_open=True)
    for bad, kw, why in [(math.nan, {}, "finite number"), (math.inf, {"low": 0}, "non-negative"),
                         (0.0, {"low": 0, "low_open": True}, "positive finite number"),
                         (1.0, {"low": 0, "high": 1, "high_open": True}, r"in \[0, 1\)"),
                         (True, {}, "finite number")]:
        with pytest.raises(ValueError, match=why):
            v.check_number("C", "x", bad, **kw)


def test_choices_strings_bools_sequences_and_names():
    with pytest.raises(ValueError, match=r"C\.k='c': must be one of \('a', 'b'\)"):
        v.check_choice("C", "k", "c", ("a", "b"))
    with pytest.raises(ValueError, match="non-empty str"):
        v.check_str("C", "s", "")
    v.check_str("C", "s", None, optional=True)
    with pytest.raises(ValueError, match="True or False"):
        v.check_bool("C", "b", 1)
    assert v.positive_numbers("C", "xs", [1, 2.5]) == (1, 2.5)
    with pytest.raises(ValueError, match=r"C\.xs=\(1, -2\): -2 is not a positive finite number"):
        v.positive_numbers("C", "xs", [1, -2])
    with pytest.raises(ValueError, match="is not a positive int"):
        v.positive_numbers("C", "xs", [1.5], integers=True)
    with pytest.raises(ValueError, match="must be a sequence"):
        v.positive_numbers("C", "xs", "12")
    for bad in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="file name"):
            v.file_name("C", "name", bad)
