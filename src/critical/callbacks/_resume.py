"""Resuming from a checkpoint that lacks a callback's state: find what can be recovered, and say
so (issue 20, item 2).

Lightning restores a callback's state only from the entry of the checkpoint whose key is the
callback's ``state_key`` (its class and arguments). A checkpoint saved by a trainer without the
callback, with its state stripped, or by the same callback with other arguments (another cut
policy or epoch, another monitor) has no such entry: the callback then silently starts over. The
callbacks call :func:`checkpoint_state` from ``on_load_checkpoint`` (which runs before
``load_state_dict``) to tell these cases apart and warn once.

Example:
    >>> class Cb:
    ...     state_key = "Cb{'policy': 'fixed'}"
    >>> checkpoint_state(Cb(), {"callbacks": {"Cb{'policy': 'never'}": {"cut": None}}})
    ('other', "Cb{'policy': 'never'}", {'cut': None})
    >>> checkpoint_state(Cb(), {"callbacks": {}})[0]
    'missing'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["checkpoint_state", "datamodule_multiplicity", "restore_or_warn"]


def checkpoint_state(
    callback: Any, checkpoint: dict[str, Any], trainer: Any = None
) -> tuple[str, str | None, Any]:
    """``("own", key, state)`` when the checkpoint holds the callback's own state,
    ``("other", key, state)`` when it holds the state of the same callback class under another
    key (the first one that no other callback of ``trainer`` owns), else ``("missing", None,
    None)``."""
    states = checkpoint.get("callbacks") or {}
    key = callback.state_key
    if key in states:
        return "own", key, states[key]
    owned = {cb.state_key for cb in getattr(trainer, "callbacks", None) or [] if cb is not callback}
    prefix = type(callback).__qualname__ + "{"
    for other, state in states.items():
        if isinstance(other, str) and other.startswith(prefix) and other not in owned:
            return "other", other, state
    return "missing", None, None


def datamodule_multiplicity(checkpoint: dict[str, Any], trainer: Any = None) -> int | None:
    """The multiplicity a datamodule saved in the checkpoint (its ``state_dict``, which
    Lightning stores under the datamodule's class name), if any; not its hyper-parameters."""
    dm = getattr(trainer, "datamodule", None)
    if dm is not None:
        keys = [type(dm).__qualname__]
    else:
        keys = [k for k in checkpoint if not str(k).endswith("hyper_parameters")]
    for key in keys:
        value = checkpoint.get(key)
        if isinstance(value, dict) and isinstance(value.get("multiplicity"), int):
            return int(value["multiplicity"])
    return None


def restore_or_warn(
    callback: Any,
    checkpoint: dict[str, Any],
    trainer: Any,
    effect: str,
    adopt_other: bool = False,
    warn: Callable[[str], Any] = rank_zero_warn,
) -> str:
    """For ``on_load_checkpoint``: nothing when the checkpoint holds the callback's own state;
    with ``adopt_other``, load the state of the same class saved under another key (the same run
    written with other arguments); else ``warn`` once that it is missing and what that means
    (``effect``). Returns what :func:`checkpoint_state` found."""
    found, key, state = checkpoint_state(callback, checkpoint, trainer)
    if found == "own":
        return found
    if found == "other" and adopt_other and isinstance(state, Mapping):
        callback.load_state_dict(dict(state))
        return found
    name = type(callback).__name__
    what = (
        f"no {name} state" if found == "missing" else f"only the state of {key} (other arguments)"
    )
    epoch = int(checkpoint.get("epoch", -1)) + 1
    warn(f"{name}: the checkpoint holds {what}: {effect} (the fit resumes at epoch {epoch})")
    return found
