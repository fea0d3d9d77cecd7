"""Adversarial attacks (L-infinity, untargeted, cross-entropy loss) and (adversarial) accuracy.

:func:`fgsm` and :func:`pgd` perturb a batch in pixel space; :func:`accuracy` and
:func:`adversarial_accuracy` evaluate a model batch by batch, in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critical.robustness._common import (
    _check_images,
    _chunks,
    _generator,
    _model_device_dtype,
    _seed_for,
    eval_mode,
)

ATTACKS = ("fgsm", "pgd")


# ----------------------------------------------------------------------------------------------
# adversarial attacks
# ----------------------------------------------------------------------------------------------


def _input_grad(model: nn.Module, x: Tensor, y: Tensor, dtype: torch.dtype) -> Tensor:
    x = x.detach().requires_grad_(True)
    logits = model(x.to(dtype))
    loss = F.cross_entropy(logits.float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _check_attack_args(eps: float, steps: int = 1, step_size: float = 0.0) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"`eps` must be a finite number >= 0, got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
    if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size >= 0):
        raise ValueError(f"`step_size` must be a finite number >= 0, got {step_size!r}")


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float = 8 / 255) -> Tensor:
    """Fast gradient sign method, L-infinity: ``clamp(x + eps * sign(grad_x loss), 0, 1)``.

    ``model`` is used as it is (call it inside :func:`eval_mode` for BatchNorm/Dropout models);
    parameter gradients are left untouched. Returns a detached tensor like ``x``.
    """
    _check_images(x)
    _check_attack_args(eps)
    _, dtype = _model_device_dtype(model)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        grad = _input_grad(model, x, y.clone(), dtype)
        return (x + eps * grad.sign()).clamp_(0, 1).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float = 2 / 255,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent (Madry et al.), L-infinity, untargeted; returns the last iterate.

    With ``random_start`` the attack starts from ``x + U(-eps, eps)`` (drawn on the CPU from
    ``generator``, or the global RNG if ``None``). Every step is projected onto the eps-ball
    around ``x`` and onto ``[0, 1]``. With ``eps=0`` the result is ``x`` exactly.
    """
    _check_images(x)
    _check_attack_args(eps, steps, step_size)
    _, dtype = _model_device_dtype(model)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()
        y = y.clone()
        lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
        x_adv = x.clone()
        if random_start and eps > 0:
            noise = torch.rand(x.shape, generator=generator, dtype=torch.float32)
            x_adv = x_adv + ((2 * noise - 1) * eps).to(device=x.device, dtype=x.dtype)
            x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y, dtype)
            x_adv = x_adv.detach() + step_size * grad.sign()
            x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
        return x_adv.detach()


def _check_inputs(x: Tensor) -> None:
    """Clean accuracy takes any float batch (images, or series ``(N, C, T)``)."""
    if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise ValueError(
            f"`x` must be a float (N, ...) tensor, got {type(x).__name__} of shape "
            f"{tuple(getattr(x, 'shape', ()))} and dtype {getattr(x, 'dtype', None)}"
        )


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``x`` (any device) and labels ``y``: images
    in [0, 1], or any float batch (such as time series ``(N, C, T)``)."""
    _check_inputs(x)
    return adversarial_accuracy(model, x, y, attack=None, batch_size=batch_size)


def adversarial_accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attack: str | None = "pgd",
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float = 2 / 255,
    random_start: bool = True,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Accuracy of ``model`` under ``attack`` (``"fgsm"``, ``"pgd"``, or ``None`` for clean).

    Batches of ``x`` are moved to the model's device one at a time; the model runs in eval mode
    and its training flags are restored afterwards. Correct predictions are accumulated on the
    device and read once at the end.
    """
    if attack is None:
        _check_inputs(x)
    else:
        _check_images(x)
    if attack is not None and attack not in ATTACKS:
        raise ValueError(f"`attack` must be one of {[*ATTACKS, None]}, got {attack!r}")
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        raise ValueError("no images to evaluate")
    device, dtype = _model_device_dtype(model)
    gen = _generator(_seed_for(seed, "pgd")) if attack == "pgd" else None
    with eval_mode(model), torch.inference_mode(False):
        correct = torch.zeros((), dtype=torch.long, device=device)
        for s in _chunks(len(x), batch_size):
            xb = x[s].to(device)
            yb = y[s].to(device=device, dtype=torch.long)
            if attack == "fgsm":
                xb = fgsm(model, xb, yb, eps=eps)
            elif attack == "pgd":
                xb = pgd(model, xb, yb, eps, steps, step_size, random_start, generator=gen)
            with torch.no_grad():
                correct += (model(xb.to(dtype)).argmax(dim=-1) == yb).sum()
    return correct.item() / len(x)
