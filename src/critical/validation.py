"""Argument checks shared by every constructor: one message style, raised before training.

Each check returns the value (normalised where that is safe, e.g. an int for an integral float
is *not* accepted: types are checked strictly) or raises ``ValueError`` naming the argument, the
valid values and what was given. Booleans are never accepted as numbers.

Example:
    >>> check_int("patience", 2, 1)
    2
    >>> check_choice("mode", "absolute", ("absolute", "relative"))
    'absolute'
    >>> check_number("threshold", 0, minimum=0, exclusive=True)
    Traceback (most recent call last):
    ...
    ValueError: `threshold` must be a finite number > 0, got 0
    >>> check_bool("augment", "no")
    Traceback (most recent call last):
    ...
    ValueError: `augment` must be True or False, got 'no'
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

__all__ = ["check_bool", "check_choice", "check_int", "check_number", "check_str"]


def check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> Any:
    """An int >= ``minimum`` (``None`` too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer >= {minimum}{extra}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive: bool = False,
    allow_none: bool = False,
) -> Any:
    """A finite int or float within ``[minimum, maximum]`` (``(minimum, ...]`` with
    ``exclusive``), returned as float; ``None`` too with ``allow_none``."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        what = ["a finite number"]
        if minimum is not None:
            what.append(f"{'>' if exclusive else '>='} {minimum:g}")
        if maximum is not None:
            what.append(f"{'and ' if minimum is not None else ''}<= {maximum:g}")
        if allow_none:
            what.append("or None")
        raise ValueError(f"`{name}` must be {' '.join(what)}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> Any:
    """One of ``choices``."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (no truthy strings: ``"no"`` is an error, not ``True``)."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return value


def check_str(name: str, value: Any, allow_none: bool = False) -> Any:
    """A non-empty string (``None`` too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a non-empty string{extra}, got {value!r}")
    return value
