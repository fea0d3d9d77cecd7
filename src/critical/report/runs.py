"""Run directories as read from disk: :class:`Run`, :func:`load_run`, :func:`load_runs`.

Which files a run directory holds, how its status (one of :data:`STATUSES`) is decided and how
its tags, policy and cut epoch are read are defined in the :mod:`critical.report` docstring.
Also holds the number helpers (``_num``, ``_int``, ``_finite``) the rest of the package shares.
No matplotlib, no Lightning.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from critical.io import PathLike
from critical.runfiles import (
    CONFIG,
    CUT_EVENT,
    ENERGY,
    EVALUATIONS,
    EXCEPTION,
    ROBUSTNESS,
    as_int,
    configured_callbacks,
    cut_epoch,
    evaluated_value,
    num,
    read_json,
    read_rows,
    run_status,
)

__all__ = ["POLICIES", "STATUSES", "Run", "Setting", "load_run", "load_runs"]

STATUSES = ("complete", "incomplete", "failed", "missing")
POLICIES = ("always", "k1", "matched", "fixed", "detector")
_POLICY_RANK = {p: i for i, p in enumerate(POLICIES)}
#: policies that cut k during the run (compared with their matched k = 1 run)
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


# ----------------------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run directory (or a sweep entry without one), as read from disk.

    Attributes:
        name: the directory's path relative to the reports' root (POSIX separators).
        path: the directory.
        tags: ``config.json["tags"]`` (completed by the ``sweep.json`` entry's tags).
        config: ``config.json`` (``{}`` when absent).
        rows: per-epoch metric rows (``metrics.json``, else ``metrics.csv``), numbers as floats
            (``None`` for empty cells), sorted by ``epoch``.
        cut_event, energy, robustness: the JSON files' contents, ``None`` when absent.
        evaluations: ``evaluations.json`` (``trainer.validate`` / ``trainer.test`` after the
            fit), ``[]`` when absent.
        status: one of :data:`STATUSES`.
        problems: what makes the run non-complete (and anything unreadable), human-readable.
    """

    name: str
    path: Path
    tags: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cut_event: dict[str, Any] | None = None
    energy: dict[str, Any] | None = None
    robustness: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"
    problems: list[str] = field(default_factory=list)
    #: the setting of a run without a config.json (a missing sweep run), from its sweep's runs
    setting_hint: Setting | None = None

    # ------------------------------------------------------------------ tags
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
                out.update(policy="fixed", cut_at=at if at is not None else cut)
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
        if p == "fixed" and tags.get("cut_at") is not None:
            return f"fixed@{tags['cut_at']}"
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
        """The ``cut_at`` tag, else the ``N`` of a ``fixed@N`` or ``matched-k1@N`` label (for a
        matched run: the cut epoch of the runs it matches)."""
        c = _int(self.tags.get("cut_at"))
        if c is None and self.policy in ("fixed", "matched"):
            m = re.match(r"(?:fixed|matched-k1)@(\d+)$", self.label)
            c = int(m.group(1)) if m else None
        if c is None and not self.tags.get("policy") and self.policy == "detector":
            c = self.cut_epoch
        return c

    @property
    def max_epochs(self) -> int | None:
        trainer = self.config.get("trainer") if isinstance(self.config, dict) else None
        m = _int((trainer or {}).get("max_epochs")) if isinstance(trainer, dict) else None
        return m if m is not None and m > 0 else None

    # ------------------------------------------------------------------ values
    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of the rows where ``key`` has a number."""
        pts = [(r["epoch"], r.get(key)) for r in self.rows if _finite(r.get(key))]
        if not pts:
            return np.zeros(0), np.zeros(0)
        e, v = zip(*pts)
        return np.asarray(e, dtype=float), np.asarray(v, dtype=float)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rows:
            for k in r:
                seen.setdefault(k, None)
        return list(seen)

    def final(self, key: str) -> float | None:
        """The last number of column ``key`` (by epoch), else the value of ``key`` in the last
        evaluation after the fit that logged it (``evaluations.json``: ``trainer.validate`` /
        ``trainer.test``, e.g. ``test_acc``), else None."""
        for r in reversed(self.rows):
            v = r.get(key)
            if _finite(v):
                return float(v)
        found = evaluated_value(self.evaluations, key)
        return None if found is None else found[0]

    def evaluated_keys(self) -> list[str]:
        """The metric names of the evaluations after the fit (``evaluations.json``)."""
        seen: dict[str, None] = {}
        for entry in self.evaluations:
            metrics = entry.get("metrics") if isinstance(entry, dict) else None
            seen.update(dict.fromkeys(metrics if isinstance(metrics, dict) else ()))
        return list(seen)

    @property
    def cut_epoch(self) -> int | None:
        """First epoch trained at the reduced k (see the :mod:`critical.report` docstring), None
        if no cut."""
        return cut_epoch(self.cut_event, self.energy, self.rows)

    def total(self, quantity: str) -> float | None:
        """``energy.json["total"][quantity]`` (``duration_s``, ``energy_kwh``, ``co2_kg``,
        ``cost``); wall time falls back to the sum of the ``energy/duration_s`` column."""
        tot = (self.energy or {}).get("total")
        v = _num(tot.get(quantity)) if isinstance(tot, dict) else None
        if v is None and quantity == "duration_s":
            _, d = self.column("energy/duration_s")
            v = float(d.sum()) if d.size else None
        return v

    def robust_accuracies(self) -> dict[str, float]:
        """Every ``*_acc`` number at the top level of ``robustness.json``."""
        rob = self.robustness if isinstance(self.robustness, dict) else {}
        return {k: float(v) for k, v in rob.items() if k.endswith("_acc") and _finite(v)}


def _exception_summary(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as err:
        return f"crashed (exception.txt unreadable: {err})"
    if not lines:
        return "crashed (exception.txt is empty)"
    msg = lines[1] if len(lines) > 1 else lines[0]
    where = re.search(r"epoch=\d+", lines[0]) if len(lines) > 1 else None
    msg = msg if len(msg) <= 200 else msg[:197] + "..."
    return f"crashed: {msg}" + (f" ({where.group(0)})" if where else "")


def load_run(path: PathLike, *, name: str | None = None) -> Run:
    """Read one run directory; ``name`` defaults to the directory's name.

    Never raises for a broken run: what is missing or unreadable goes to ``Run.problems`` and
    sets ``Run.status`` (see the :mod:`critical.report` docstring).
    """
    path = Path(path)
    run = Run(name=name or path.name, path=path)
    if not path.is_dir():
        run.status = "missing"
        run.problems.append("no run directory")
        return run
    problems = run.problems
    config = read_json(path / CONFIG, problems, required=True)
    if config is not None and not isinstance(config, dict):
        problems.append(f"{CONFIG}: a {type(config).__name__}, not a JSON object")
    run.config = config if isinstance(config, dict) else {}
    for key, kind in (("tags", dict), ("callbacks", list), ("module", dict), ("datamodule", dict)):
        value = run.config.get(key)
        if value is not None and not isinstance(value, kind):
            problems.append(
                f"{CONFIG}: {key!r} is a {type(value).__name__}, not a {kind.__name__}; ignored"
            )
            run.config = {k: v for k, v in run.config.items() if k != key}
    tags = run.config.get("tags")
    run.tags = dict(tags) if isinstance(tags, dict) else {}
    run.rows = read_rows(path, problems)
    ce = read_json(path / CUT_EVENT, problems)
    run.cut_event = ce if isinstance(ce, dict) else None
    energy = read_json(path / ENERGY, problems)
    run.energy = energy if isinstance(energy, dict) else None
    rob = read_json(path / ROBUSTNESS, problems)
    run.robustness = rob if isinstance(rob, dict) else None
    evaluations = read_json(path / EVALUATIONS, problems)
    if isinstance(evaluations, list):
        run.evaluations = [e for e in evaluations if isinstance(e, dict)]
    status = run_status(path, config=run.config, rows=run.rows)
    problems.extend(p for p in status.problems if p not in problems)
    # an unreadable file is a problem even when the run finished
    run.status = "incomplete" if status.complete and problems else status.status
    if status.status == "failed":
        problems.insert(0, _exception_summary(path / EXCEPTION))
    return run


def load_runs(root: PathLike) -> list[Run]:
    """Every run below ``root``: each directory holding a ``config.json`` (at any depth, hidden
    directories skipped), plus every entry of every ``sweep.json`` below ``root`` (names relative
    to the ``sweep.json``'s directory) that has no such directory (status ``"missing"``, or
    ``"incomplete"``/``"failed"`` when the directory exists without a ``config.json``). A sweep
    entry's tags fill in the tags its run's ``config.json`` lacks. Sorted by name.

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs directory {root} does not exist or is not a directory")

    def visible(p: Path) -> bool:
        return not any(part.startswith(".") for part in p.relative_to(root).parts)

    def rel(p: Path) -> str:
        r = p.relative_to(root).as_posix()
        return r if r != "." else p.resolve().name

    runs: dict[Path, Run] = {}
    for cfg in sorted(root.rglob("config.json")):
        if visible(cfg) and cfg.is_file():
            d = cfg.parent
            try:
                runs[d.resolve()] = load_run(d, name=rel(d))
            except Exception as err:  # noqa: BLE001 - one unreadable run must not stop the report
                run = Run(name=rel(d), path=d, status="incomplete")
                run.problems.append(f"unreadable: {type(err).__name__}: {err}")
                runs[d.resolve()] = run
    for sj in sorted(root.rglob("sweep.json")):
        if not visible(sj):
            continue
        try:
            with open(sj, encoding="utf-8") as f:
                sweep = json.load(f)
            entries = sweep["runs"]
            if not isinstance(entries, list):
                raise TypeError("'runs' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as err:
            warnings.warn(
                f"{sj}: not a readable sweep file ({err}); its runs are not checked", stacklevel=2
            )
            continue
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                warnings.warn(f"{sj}: skipped a malformed entry {entry!r}", stacklevel=2)
                continue
            d = sj.parent / entry["name"]
            tags = entry.get("tags")
            etags: dict[str, Any] = tags if isinstance(tags, dict) else {}
            if etags.get("sweep") is None and isinstance(sweep.get("name"), str):
                etags = {**etags, "sweep": sweep["name"]}
            key = d.resolve()
            if key not in runs:
                run = load_run(d, name=(sj.parent.relative_to(root) / entry["name"]).as_posix())
                if run.status == "missing":
                    run.problems = [f"no run directory (listed in {sj.relative_to(root)})"]
                runs[key] = run
            run = runs[key]
            run.tags = {**etags, **run.tags}
    _hint_settings(list(runs.values()))
    return sorted(runs.values(), key=lambda r: r.name)


def _hint_settings(runs: list[Run]) -> None:
    """Give each run without a ``config.json`` the setting of the runs of its sweep with the
    same model (and budget tag, when it has one), if they all share one."""
    known: dict[tuple[Any, str], set[Setting]] = {}
    for r in runs:
        if r.config:
            known.setdefault((r.tags.get("sweep"), r.model), set()).add(r.setting)
    for r in runs:
        if r.config:
            continue
        budget = _int(r.tags.get("budget"))
        found = {
            s
            for s in known.get((r.tags.get("sweep"), r.model), set())
            if budget is None or s.budget == budget
        }
        if len(found) == 1:
            r.setting_hint = found.pop()
