"""Registration of critical's models in timm's registry, and the arguments of their entrypoints.

:func:`_register` wraps :func:`timm.models.register_model` so that re-registering our own
entrypoint (a module reload) does not warn; :func:`_entry_kwargs` strips the arguments timm's
``create_model`` passes to every entrypoint and refuses ``pretrained=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import timm
from timm.models import register_model
from torch import nn

# Names of the entrypoints registered by critical.models, in registration order.
_OUR_MODELS: list[str] = []

# Arguments timm's create_model passes to every entrypoint; our models have no pretrained weights.
_TIMM_FACTORY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` with timm; replacing our own earlier registration (reload) does not warn."""
    name = fn.__name__
    if name not in _OUR_MODELS:
        _OUR_MODELS.append(name)
    vars(fn)["_critical_model"] = True  # a function attribute (marks our own entrypoints)
    ours = timm.models.is_model(name) and getattr(
        timm.models.model_entrypoint(name), "_critical_model", False
    )
    if ours:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return register_model(fn)
    return register_model(fn)


def _entry_kwargs(name: str, pretrained: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Strip timm factory arguments; refuse ``pretrained=True`` (no weights exist)."""
    if pretrained:
        raise ValueError(
            f"{name!r} has no pretrained weights (critical's CIFAR-sized models are trained from "
            "scratch); use pretrained=False, or start from your own weights file with "
            "ImageClassifier(weights=<file>)"
        )
    for key in _TIMM_FACTORY_KWARGS:
        kwargs.pop(key, None)
    return kwargs
