"""Start a model from saved weights: read a weights file, load it checked, optionally with a new
classifier, and freeze layers (for fine-tuning).

:func:`read_state_dict` reads, from a local file:

* a Lightning checkpoint (``.ckpt``: its ``"state_dict"``; the keys of an
  :class:`~critical.task.ImageClassifier` start with ``net.``),
* a plain PyTorch state dict (``torch.save(model.state_dict(), ...)``; also one nested under
  ``"state_dict"`` or ``"model"``, as timm's training script writes),
* a ``.safetensors`` file (timm and Hugging Face weights),

and returns the network's tensors under the network's own names (``net.``, ``_orig_mod.``
from ``torch.compile`` and ``module.`` from DDP are stripped). :func:`load_weights` loads them
into a network after checking that the names and shapes match exactly; a mismatch raises
``ValueError`` naming the first mismatching key. ``new_head=True`` leaves the classifier
(``model.get_classifier()``, timm's interface, which critical's models implement) at its fresh
initialization, for a different number of classes. :func:`freeze` turns off gradients of the
backbone or of named layers.

Loading is strict on purpose: a silently partial load would make a fine-tuning run look like one
from scratch. Lightning checkpoints hold more than tensors (hyper-parameters, callback states);
they are read with ``torch.load(weights_only=True)`` where possible and otherwise fully
unpickled, as Lightning itself does for ``ckpt_path``: load only files you trust.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from critical.models.small import SmallCNN
    >>> src = SmallCNN(num_classes=10, in_chans=1)
    >>> path = tempfile.mktemp(suffix=".pt")
    >>> torch.save(src.state_dict(), path)
    >>> dst = SmallCNN(num_classes=4, in_chans=1)
    >>> load_weights(dst, read_state_dict(path))
    Traceback (most recent call last):
    ...
    ValueError: shape of 'fc.weight' differs: (10, 128) in the weights, (4, 128) in the model (the classifier: new_head=True starts a new one)
    >>> load_weights(dst, read_state_dict(path), new_head=True)
    ['fc.weight', 'fc.bias']
    >>> freeze(dst, "backbone")
    ['features']
    >>> [n for n, p in dst.named_parameters() if p.requires_grad]
    ['fc.weight', 'fc.bias']
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["classifier_keys", "freeze", "load_weights", "read_state_dict"]

_PREFIXES = ("_orig_mod.", "module.")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # A Lightning checkpoint with plain Python objects in its hyper-parameters or callback
        # states: unpickle it as Lightning's own `ckpt_path` loading does (trusted files only).
        return torch.load(path, map_location="cpu", weights_only=False)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The network tensors of a weights file (Lightning checkpoint, state dict, safetensors).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` when it holds no tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"weights file {str(p)!r} does not exist")
    obj: Any
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj = load_file(str(p), device="cpu")
    else:
        obj = _torch_load(p)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(p)!r} holds a {type(obj).__name__}, not a state dict")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ValueError(f"{str(p)!r} holds no tensors: not a checkpoint or state dict")
    if any(k.startswith("net.") for k in state):  # an ImageClassifier: keep its network
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if k.startswith(prefix):
                    k, changed = k[len(prefix) :], True
        out[k] = v
    return out


def classifier_keys(net: nn.Module) -> list[str]:
    """State-dict keys of the network's classifier (``net.get_classifier()``).

    Raises ``ValueError`` when the network has no ``get_classifier()``.
    """
    get = getattr(net, "get_classifier", None)
    if get is None:
        raise ValueError(
            f"{type(net).__name__} has no get_classifier(): its classifier cannot be told apart"
        )
    head = get()
    for name, module in net.named_modules():
        if module is head:
            prefix = f"{name}." if name else ""
            return [prefix + k for k in head.state_dict()]
    return []


def load_weights(net: nn.Module, state: Mapping[str, Tensor], new_head: bool = False) -> list[str]:
    """Load ``state`` into ``net``, requiring the same keys and shapes; returns the keys left fresh.

    With ``new_head=True`` the classifier's entries of ``state`` are ignored (the classifier keeps
    its fresh initialization, e.g. for another number of classes). Raises ``ValueError`` naming
    the first mismatching key (in the network's order): a shape mismatch, a key of the network
    missing from ``state``, or a key of ``state`` the network lacks.
    """
    own = net.state_dict()
    fresh = classifier_keys(net) if new_head else []
    skip = set(fresh)
    head = set() if new_head else set(_safe_classifier_keys(net))
    for key, value in own.items():
        if key in skip or key not in state:
            continue
        if tuple(state[key].shape) != tuple(value.shape):
            hint = " (the classifier: new_head=True starts a new one)" if key in head else ""
            raise ValueError(
                f"shape of {key!r} differs: {tuple(state[key].shape)} in the weights, "
                f"{tuple(value.shape)} in the model{hint}"
            )
    missing = [k for k in own if k not in skip and k not in state]
    if missing:
        raise ValueError(
            f"the weights lack {len(missing)} key(s) of the model, first {missing[0]!r}: "
            "not the same architecture"
        )
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ValueError(
            f"the weights have {len(unexpected)} key(s) the model lacks, first "
            f"{unexpected[0]!r}: not the same architecture"
        )
    net.load_state_dict({k: v for k, v in state.items() if k not in skip}, strict=False)
    return fresh


def _safe_classifier_keys(net: nn.Module) -> list[str]:
    try:
        return classifier_keys(net)
    except ValueError:
        return []


def freeze(net: nn.Module, layers: str | Sequence[str]) -> list[str]:
    """Turn off gradients of ``"backbone"`` (all but the classifier) or of the parameters whose
    names start with one of ``layers`` (module paths such as ``"blocks.0"``); returns the frozen
    top-level modules.

    Frozen parameters drop out of the optimizer and of the metric callbacks. Batch-norm running
    statistics of frozen layers still update in training mode.

    Raises ``ValueError`` for a name that matches no parameter (listing the top-level modules).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    params = dict(net.named_parameters())
    if names == ["backbone"]:
        head = {k for k in classifier_keys(net) if k in params}
        chosen = [k for k in params if k not in head]
    else:
        chosen = []
        for name in names:
            match = [k for k in params if k == name or k.startswith(f"{name}.")]
            if not match:
                top = [n for n, _ in net.named_children()]
                raise ValueError(
                    f"freeze: no parameter of the model under {name!r}; use 'backbone' or "
                    f"module paths under {top}"
                )
            chosen += match
    for k in chosen:
        params[k].requires_grad_(False)
    return list(dict.fromkeys(k.split(".")[0] for k in chosen))
