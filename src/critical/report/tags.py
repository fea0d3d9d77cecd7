"""What a run *is*, read from its tags and ``config.json``: :class:`Setting` (data set, model,
budget) and :class:`RunTags`, the part of :class:`~critical.report.runs.Run` that reads its
model, data set, budget, policy, label, seed, k and cut (the rules are in the
:mod:`critical.report` docstring, "Settings, groups and tags"). Also the number helpers
(``_num``, ``_int``, ``_finite``) the package shares. No matplotlib, no Lightning.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from critical.runfiles import as_int, configured_callbacks, cut_epoch, num

__all__ = ["POLICIES", "RunTags", "Setting"]

POLICIES = ("always", "k1", "matched", "fixed", "staged", "detector")
_POLICY_RANK = {p: i for i, p in enumerate(POLICIES)}
#: policies that cut k straight to 1 during the run (compared with their matched k = 1 run; a
#: staged cut trains more steps than ``matched-k1@c``, so it has none)
CUT_POLICIES = ("fixed", "detector")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


_num = num
_int = as_int


def _finite(v: object) -> TypeGuard[float]:
    """Whether ``v`` is a finite number (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What runs must share to be compared: the data set, the model and the budget (epochs).

    ``"-"`` stands for an unknown data set or model, ``None`` for an unknown budget.

    Example:
        >>> Setting("cifar10", "cifar_resnet20", 60).label
        'cifar_resnet20 on cifar10, 60 epochs'
        >>> Setting("-", "-", None).label
        'unknown model on unknown data, unknown epochs'
    """

    dataset: str
    model: str
    budget: int | None

    @property
    def label(self) -> str:
        model = self.model if self.model != "-" else "unknown model"
        data = self.dataset if self.dataset != "-" else "unknown data"
        epochs = f"{self.budget} epochs" if self.budget is not None else "unknown epochs"
        return f"{model} on {data}, {epochs}"

    def sort_key(self) -> tuple:
        return (self.dataset, self.model, self.budget if self.budget is not None else math.inf)


class RunTags:
    """The tag-reading half of :class:`~critical.report.runs.Run` (a mixin: the attributes
    below are the dataclass fields of ``Run``)."""

    name: str
    tags: dict[str, Any]
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    cut_event: dict[str, Any] | None
    energy: dict[str, Any] | None
    setting_hint: Setting | None

    def _hparams(self, part: str) -> dict[str, Any]:
        node = self.config.get(part) if isinstance(self.config, dict) else None
        hp = node.get("hparams") if isinstance(node, dict) else None
        return hp if isinstance(hp, dict) else {}

    def _class_name(self, part: str) -> str | None:
        """The class name ``config.json`` records for the module or the datamodule."""
        node = self.config.get(part) if isinstance(self.config, dict) else None
        cls = node.get("class") if isinstance(node, dict) else None
        return str(cls).rsplit(".", 1)[-1] if cls else None

    @property
    def model(self) -> str:
        """The ``model`` tag, else ``config.json["module"]["hparams"]["model"]``, else the
        module's class name (a user's own LightningModule), else ``"-"``."""
        m = self.tags.get("model")
        if m in (None, ""):
            m = self._hparams("module").get("model")
        if m in (None, ""):
            m = self._class_name("module")
        return str(m) if m not in (None, "") else "-"

    @property
    def dataset(self) -> str:
        """``config.json["datamodule"]["hparams"]["dataset"]`` (``folder:<root>`` for an image
        folder; a ``train_size`` or ``image_size`` that is set is appended in brackets), else a
        ``dataset`` tag, else the datamodule's class name (a user's own), else ``"-"``."""
        hp = self._hparams("datamodule")
        name = hp.get("dataset")
        if name in (None, ""):
            tag = self.tags.get("dataset")
            if tag in (None, ""):
                tag = self._class_name("datamodule")
            return str(tag) if tag not in (None, "") else "-"
        name = str(name)
        if name == "folder" and hp.get("root"):
            name = f"folder:{hp['root']}"
        extra = [f"{k}={hp[k]}" for k in ("train_size", "image_size") if hp.get(k) is not None]
        return name + (f"[{','.join(extra)}]" if extra else "")

    @property
    def budget(self) -> int | None:
        """The ``budget`` tag, else ``trainer.max_epochs``; for a matched k = 1 run without the
        tag, the budget of the run it matches: ``matched_epochs - (k - 1) * cut_at``."""
        b = _int(self.tags.get("budget"))
        if b is not None:
            return b
        if self.policy == "matched":
            em = _int(self.tags.get("matched_epochs")) or self.max_epochs
            k, c = self.k, self.cut_at
            if em is not None and k is not None and c is not None and em - (k - 1) * c > c:
                return em - (k - 1) * c
        return self.max_epochs

    @property
    def setting(self) -> Setting:
        """``(dataset, model, budget)``; for a run without a ``config.json``, the setting its
        sweep's other runs of the same model (and budget tag) share, when they share one."""
        if not self.config and self.setting_hint is not None:
            return self.setting_hint
        return Setting(self.dataset, self.model, self.budget)

    @property
    def alias_of(self) -> str | None:
        """``config.json["alias_of"]``: the run whose training this one is a copy of."""
        a = self.config.get("alias_of") if isinstance(self.config, dict) else None
        return str(a) if a not in (None, "") else None

    def _inferred(self) -> dict[str, Any]:
        """For a run without sweep tags (a user's own runs): its policy, label, cut and k read
        from its ``config.json`` (the AugmentationCutoff's settings), ``cut_event.json`` and the
        ``multiplicity`` column."""
        ks = [_int(r.get("multiplicity")) for r in self.rows]
        ks = [k for k in ks if k is not None]
        ce = self.cut_event or {}
        k = _int(ce.get("multiplicity_before")) or (ks[0] if ks else None)
        cut = self.cut_epoch
        cutoff = configured_callbacks(self.config).get("AugmentationCutoff")
        out: dict[str, Any] = {"k": k, "cut_at": cut}
        if cutoff is not None:
            policy = cutoff.get("policy")
            if policy == "never":
                out["policy"] = "k1" if k == 1 else "always"
            elif policy == "fixed":
                at = _int(cutoff.get("epoch"))
                frac, E = cutoff.get("fraction"), self.max_epochs
                if at is None and isinstance(frac, (int, float)) and E:
                    at = round(frac * E)
                staged = "staged" if cutoff.get("stages") else "fixed"  # k -> stages -> 1
                out.update(policy=staged, cut_at=at if at is not None else cut)
            elif policy == "detector":
                cp = configured_callbacks(self.config).get("CriticalPeriod") or {}
                monitor = cp.get("monitor")
                if isinstance(monitor, (list, tuple)):
                    monitor = "+".join(str(m) for m in monitor)
                out.update(policy="detector", label=f"detector:{monitor or 'default'}")
        elif ks:
            if cut is not None:
                out.update(policy="fixed", cut_at=cut)  # a cut, its rule unknown
            else:
                out["policy"] = "k1" if k == 1 else "always"
        return out

    @property
    def policy(self) -> str | None:
        """The ``policy`` tag, else read from a ``label`` tag, else inferred from the run's own
        files (:meth:`_inferred`); ``None`` when nothing says."""
        p = self.tags.get("policy")
        if p not in (None, ""):
            return str(p)
        label = self.tags.get("label")
        if not isinstance(label, str):
            return self._inferred().get("policy")
        if label.startswith("always"):
            return "always"
        if label == "k1":
            return "k1"
        if label.startswith("fixed"):
            return "fixed"
        if label.startswith("staged"):
            return "staged"
        if label.startswith("matched"):
            return "matched"
        if label.startswith("detector"):
            return "detector"
        return None

    @property
    def label(self) -> str:
        """The ``label`` tag; else one made from the policy tags; else the run's name."""
        label = self.tags.get("label")
        if label not in (None, ""):
            return str(label)
        p = self.tags.get("policy")
        tags = dict(self.tags)
        if p in (None, ""):
            inferred = self._inferred()
            if inferred.get("label"):
                return str(inferred["label"])
            p = inferred.get("policy")
            tags = {**{k: v for k, v in inferred.items() if v is not None}, **tags}
        if p == "always" and tags.get("k") is not None:
            return f"always-k{tags['k']}"
        if p in ("fixed", "staged") and tags.get("cut_at") is not None:
            return f"{p}@{tags['cut_at']}"
        if p == "matched" and tags.get("cut_at") is not None:
            return f"matched-k1@{tags['cut_at']}"
        if p in POLICIES:
            return str(p)
        return self.name

    @property
    def seed(self) -> int | None:
        """The ``seed`` tag, else ``config.json["seed"]`` (the seed ``seed_everything`` set,
        recorded by :class:`~critical.callbacks.RunDirectory`)."""
        seed = _int(self.tags.get("seed"))
        if seed is None and isinstance(self.config, dict):
            seed = _int(self.config.get("seed"))
        return seed

    @property
    def k(self) -> int | None:
        k = _int(self.tags.get("k"))
        return k if k is not None or self.tags.get("policy") else self._inferred().get("k")

    @property
    def cut_at(self) -> int | None:
        """The ``cut_at`` tag, else the ``N`` of a ``fixed@N``, ``staged@N`` or
        ``matched-k1@N`` label (for a matched run: the cut epoch of the runs it matches)."""
        c = _int(self.tags.get("cut_at"))
        if c is None and self.policy in ("fixed", "staged", "matched"):
            m = re.match(r"(?:fixed|staged|matched-k1)@(\d+)$", self.label)
            c = int(m.group(1)) if m else None
        if c is None and not self.tags.get("policy") and self.policy == "detector":
            c = self.cut_epoch
        return c

    @property
    def max_epochs(self) -> int | None:
        trainer = self.config.get("trainer") if isinstance(self.config, dict) else None
        m = _int((trainer or {}).get("max_epochs")) if isinstance(trainer, dict) else None
        return m if m is not None and m > 0 else None

    @property
    def cut_epoch(self) -> int | None:
        """First epoch trained at the reduced k (see the :mod:`critical.report` docstring), None
        if no cut."""
        return cut_epoch(self.cut_event, self.energy, self.rows)
