"""Why a detector fired, or what held it back: a plain account built from its history.

Example:
    >>> from critical.detector import StabilityDetector
    >>> det = StabilityDetector("m", mode="absolute", threshold=0.05, min_epochs=1,
    ...                         loss_window=2, guard_lr=False)
    >>> for e, v in enumerate([1.0, 0.5, 0.48, 0.47, 0.46]):
    ...     _ = det.update(e, {"m": v}, loss=4.0 - 0.5 * e - 0.2 * e * e)
    >>> print(explain(det)["text"])  # doctest: +NORMALIZE_WHITESPACE
    not over after 5 epochs: the learning guard objected in epochs 0-4 (the loss still fell at
    1.13x its average pace since epoch 1, at or above 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["epoch_ranges", "explain"]


def epoch_ranges(epochs: Iterable[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    out: list[str] = []
    run: list[int] = []
    for e in sorted(set(epochs)):
        if run and e != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(e)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def _guard_detail(name: str, entry: dict[str, Any], det: Any) -> str:
    if name == "finite":
        d = det.diverged or {}
        return f"the run diverged in epoch {d.get('epoch')}: {d.get('cause')}"
    if name == "learning":
        pace = entry.get("pace")
        if pace is None:
            return f"fewer than {det.loss_window + 2} epochs of finite loss to judge the pace by"
        return (
            f"the loss still fell at {pace:.2f}x its average pace since epoch 1, at or above "
            f"{det.loss_threshold:g}"
        )
    if entry.get("lr_rose"):
        return "the learning rate rose (warm-up)"
    if entry.get("lr_rose") is None and entry.get("lr_jump") is None:
        return f"the learning rate was warming up or fell by half within {det.lr_cooldown} epochs"
    return f"a step drop of the learning rate within the last {det.lr_cooldown} epoch(s)"


_GUARD_NAMES = {
    "finite": "the divergence guard",
    "learning": "the learning guard",
    "lr": "the LR guard",
}


def explain(det: Any) -> dict[str, Any]:
    """An account of a :class:`~critical.detector.StabilityDetector`'s decision.

    Returns ``{"over", "epoch", "reason", "held_back", "text"}``: ``held_back`` lists, for each
    guard that objected and for each watched metric that had not settled, the epochs concerned
    and the last reading (``{"by", "epochs", "count", "detail"}``), in the order of their last
    objection; ``text`` says it in one sentence. For a detector that fired, ``held_back``
    describes the epochs before the firing, and ``at_fire`` the guards' readings at the firing
    epoch (the loss's pace, the learning-rate flags, the metrics' changes).
    """
    history = list(det.history)
    event = det.event
    if event is not None:
        history = [h for h in history if h["epoch"] <= event.epoch]
    held: list[dict[str, Any]] = []
    for name in ("finite", "learning", "lr"):
        epochs = [h["epoch"] for h in history if name in h.get("blocked", [])]
        if epochs:
            last = next(h for h in reversed(history) if name in h.get("blocked", []))
            held.append(
                {
                    "by": name,
                    "epochs": epoch_ranges(epochs),
                    "count": len(epochs),
                    "last": max(epochs),
                    "detail": _guard_detail(name, last, det),
                }
            )
    for m in det.metrics:
        thr = det.thresholds[m]
        unsettled = [
            h["epoch"]
            for h in history
            if not h.get("blocked") and (m not in h["changes"] or h["changes"][m] >= thr)
        ]
        if unsettled:
            last = next(h for h in reversed(history) if h["epoch"] == max(unsettled))
            change = last["changes"].get(m)
            detail = (
                f"{m}'s change was {det.mode} {change:.3g}, at or above {thr:g}"
                if change is not None
                else f"{m} had no change to measure yet (or no value)"
            )
            held.append(
                {
                    "by": m,
                    "epochs": epoch_ranges(unsettled),
                    "count": len(unsettled),
                    "last": max(unsettled),
                    "detail": detail,
                }
            )
    held.sort(key=lambda h: -h["last"])
    n = len(det.history)
    if event is not None:
        fire = history[-1] if history else {}
        text = f"over at the end of epoch {event.epoch} ({event.reason})"
        out: dict[str, Any] = {
            "over": True,
            "epoch": event.epoch,
            "reason": event.reason,
            "at_fire": {
                "changes": dict(fire.get("changes", {})),
                "pace": fire.get("pace"),
                "lr_rose": fire.get("lr_rose"),
                "lr_jump": fire.get("lr_jump"),
                "blocked": list(fire.get("blocked", [])),
            },
        }
    else:
        parts = []
        for h in held:
            who = _GUARD_NAMES.get(h["by"], h["by"])
            where = "epoch" if h["count"] == 1 else "epochs"
            if h["by"] in _GUARD_NAMES:
                parts.append(f"{who} objected in {where} {h['epochs']} ({h['detail']})")
            else:
                parts.append(f"{who} had not settled in {where} {h['epochs']} ({h['detail']})")
        last_epoch = history[-1]["epoch"] if history else None
        if last_epoch is not None and all(h["last"] != last_epoch for h in held):
            parts.append(
                f"epoch {last_epoch} was stable, but the rule needs {det.patience} stable epochs "
                f"in a row and at least {det.min_epochs} epochs"
            )
        reason = "; ".join(parts) if parts else "no epoch was fed to it"
        text = f"not over after {n} epoch{'s' if n != 1 else ''}: {reason}"
        out = {"over": False, "epoch": None, "reason": None}
    out.update(held_back=held, text=text)
    return out
