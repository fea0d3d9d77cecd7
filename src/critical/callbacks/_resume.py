"""Resuming from a checkpoint: the epoch it resumes at, and what can be recovered (and said) when
it lacks a callback's state (issue 20, item 2).

Lightning restores a callback's state only from the entry of the checkpoint whose key is the
callback's ``state_key`` (its class and arguments). A checkpoint saved by a trainer without the
callback, with its state stripped, or by the same callback with other arguments (another cut
policy or epoch, another monitor) has no such entry: the callback then silently starts over. The
callbacks call :func:`checkpoint_state` from ``on_load_checkpoint`` (which runs before
``load_state_dict``) to tell these cases apart and warn once; :func:`recover_cut` is
:class:`~critical.callbacks.AugmentationCutoff`'s recovery, :func:`resume_epoch` the epoch a fit
resumes at.

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

__all__ = [
    "checkpoint_state",
    "datamodule_multiplicity",
    "recover_cut",
    "restore_or_warn",
    "resume_epoch",
]


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


def resume_epoch(checkpoint: dict[str, Any]) -> int:
    """The epoch training resumes at, read from the checkpoint's fit loop (the trainer's own
    counter is restored only after ``on_fit_start``), else its ``epoch`` + 1."""
    try:
        progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]
        return int(progress["processed"])
    except (KeyError, TypeError):
        return int(checkpoint.get("epoch", -1)) + 1


def recover_cut(cutoff: Any, checkpoint: dict[str, Any], trainer: Any, epoch: int | None) -> None:
    """A checkpoint without an AugmentationCutoff's (``cutoff``) state: take the cut from the
    state of an AugmentationCutoff with other arguments, or from the datamodule's saved
    multiplicity (the cut then taken at ``epoch``, the resumed one, at the latest); say what was
    missing and what happens now."""
    found, key, state = checkpoint_state(cutoff, checkpoint, trainer)
    if found == "own":
        return
    e = epoch
    if found == "other" and isinstance(state, dict):
        if state.get("cut_epoch") is not None:
            cutoff.load_state_dict(state)
            rank_zero_warn(
                f"AugmentationCutoff: the checkpoint holds the state of {key}, not of this "
                f"callback ({cutoff.state_key}); its cut is kept: k={cutoff.multiplicity_before} "
                f"-> {cutoff.multiplicity_after} from epoch {cutoff.cut_epoch}"
            )
        return  # an uncut run's state (a branch off an always-k run): nothing to keep
    saved = datamodule_multiplicity(checkpoint, trainer)
    hp = checkpoint.get("datamodule_hyper_parameters") or {}
    initial = hp.get("multiplicity") if isinstance(hp, dict) else None
    if saved is not None and isinstance(initial, int) and saved < initial:
        cutoff.cut_epoch = e
        cutoff.multiplicity_before, cutoff.multiplicity_after = initial, saved
        cutoff.reason = (
            f"recovered from the datamodule's state (k={saved}) in a checkpoint without "
            f"AugmentationCutoff state; the cut happened at or before epoch {e}"
        )
        rank_zero_warn(
            "AugmentationCutoff: the checkpoint holds no AugmentationCutoff state, but the "
            f"datamodule saved in it had k={saved} (it started at k={initial}): the cut is "
            f"kept (k={saved} from now on), its epoch taken as {e} (at the latest)"
        )
        return
    rank_zero_warn(
        "AugmentationCutoff: the checkpoint holds no AugmentationCutoff state (saved by a "
        "trainer without it, or stripped): whether k was cut before epoch "
        f"{e} is unknown; k stays as the data has it and the cut is decided from here on"
    )
