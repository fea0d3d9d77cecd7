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

import difflib
import math
import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_keys",
    "check_number",
    "check_path",
    "check_str",
    "check_subset",
    "check_type",
]


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
        raise ValueError(
            f"`{name}` must be one of {list(choices)}, got {value!r}{_did_you_mean(value, choices)}"
        )
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


def check_type(
    name: str, value: Any, types: type | tuple[type, ...], what: str, allow_none: bool = False
) -> Any:
    """An instance of ``types`` (described as ``what`` in the message); ``None`` too with
    ``allow_none``. Booleans are not accepted where ``bool`` is not among ``types``."""
    if value is None and allow_none:
        return None
    wanted = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted):
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be {what}{extra}, got {value!r}")
    return value


def check_path(name: str, value: Any, allow_none: bool = False) -> Any:
    """A non-empty path (``str`` or ``os.PathLike``); ``None`` too with ``allow_none``."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a path (str or os.PathLike){extra}, got {value!r}")
    return value


def check_subset(
    name: str, values: Any, choices: Collection[Any], allow_empty: bool = True
) -> list:
    """A list of items of ``choices`` (a single string counts as a one-item list).

    Example:
        >>> check_subset("attacks", ["fgsm", "pgdd"], ("fgsm", "pgd"))
        Traceback (most recent call last):
        ...
        ValueError: `attacks` must be a subset of ['fgsm', 'pgd'], got ['pgdd'] (did you mean 'pgd'?)
    """
    items = [values] if isinstance(values, str) else values
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise ValueError(f"`{name}` must be a list of items of {list(choices)}, got {values!r}")
    items = list(items)
    bad = [v for v in items if isinstance(v, bool) or v not in choices]
    if bad or (not items and not allow_empty):
        hint = _did_you_mean(bad[0], choices) if bad else ""
        empty = "a non-empty " if not allow_empty else "a "
        got = bad if bad else items
        raise ValueError(f"`{name}` must be {empty}subset of {list(choices)}, got {got!r}{hint}")
    return items


def check_keys(name: str, mapping: Any, valid: Collection[str]) -> dict[str, Any]:
    """A mapping (``None``: empty) whose keys are all in ``valid``; an unknown key raises with the
    closest valid one.

    Example:
        >>> check_keys("codecarbon_kwargs", {"gpu_id": [0]}, ("gpu_ids", "pue"))
        Traceback (most recent call last):
        ...
        ValueError: `codecarbon_kwargs` has unknown key 'gpu_id' (did you mean 'gpu_ids'?); valid keys: gpu_ids, pue
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ValueError(f"`{name}` must be a mapping (dict) or None, got {mapping!r}")
    for key in mapping:
        if key not in valid:
            raise ValueError(
                f"`{name}` has unknown key {key!r}{_did_you_mean(key, valid)}; valid keys: "
                f"{', '.join(sorted(valid))}"
            )
    return dict(mapping)


def _did_you_mean(value: Any, choices: Collection[Any]) -> str:
    names = [c for c in choices if isinstance(c, str)]
    if not isinstance(value, str) or not names:
        return ""
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
