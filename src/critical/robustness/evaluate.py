"""Everything at once: clean, adversarial and corruption accuracy of a model in one dict."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from critical.robustness._common import SEVERITIES
from critical.robustness.attacks import ATTACKS, accuracy, adversarial_accuracy
from critical.robustness.cifar10c import cifar10c_accuracy
from critical.robustness.corruptions import corruption_accuracy

# ----------------------------------------------------------------------------------------------
# everything at once
# ----------------------------------------------------------------------------------------------


def evaluate_robustness(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    attacks: Sequence[str] = ATTACKS,
    eps: float = 8 / 255,
    pgd_steps: int = 10,
    pgd_step_size: float = 2 / 255,
    random_start: bool = True,
    corruptions: str | Sequence[str] | None = "default",
    severities: Sequence[int] = SEVERITIES,
    cifar10c_dir: str | os.PathLike | None = None,
    cifar10c_num_images: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Clean, adversarial and corruption accuracy of ``model`` on ``x``, ``y``.

    Returns a JSON-serialisable dict::

        {"num_images": n, "clean_acc": a, "fgsm_acc": a, "pgd_acc": a,
         "attack": {"norm": "Linf", "eps": ..., "pgd_steps": ..., "pgd_step_size": ...,
                    "random_start": ..., "seed": ...},
         "corruption_acc": a, "corruption": {... see corruption_accuracy ...}}

    Attack keys appear for the requested ``attacks``; corruption keys unless
    ``corruptions=None``. With ``cifar10c_dir`` the corruption accuracy comes from the official
    files (``cifar10c_num_images`` per corruption and severity, default all) instead of
    synthetic corruptions of ``x``.
    """
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    bad = [a for a in attacks if a not in ATTACKS]
    if bad:
        raise ValueError(f"unknown attack(s) {bad}; valid: {list(ATTACKS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
    result: dict[str, Any] = {"num_images": len(x)}
    result["clean_acc"] = accuracy(model, x, y, batch_size)
    for a in attacks:
        result[f"{a}_acc"] = adversarial_accuracy(
            model, x, y, a, eps, pgd_steps, pgd_step_size, random_start, batch_size, seed
        )
    if attacks:
        result["attack"] = {
            "norm": "Linf",
            "eps": eps,
            "pgd_steps": pgd_steps,
            "pgd_step_size": pgd_step_size,
            "random_start": random_start,
            "seed": seed,
        }
    if corruptions is not None:
        if cifar10c_dir is not None:
            c = cifar10c_accuracy(
                model, cifar10c_dir, corruptions, severities, cifar10c_num_images, batch_size
            )
        else:
            c = corruption_accuracy(model, x, y, corruptions, severities, batch_size, seed)
        result["corruption_acc"] = c["mean_acc"]
        result["corruption"] = c
    return result
