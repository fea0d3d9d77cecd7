"""Fake run directories for the report tests, written file by file in RunDirectory's format.

:func:`make_fake_sweep` builds one model (``tiny_cnn``, 6 epochs, k = 3) x policies always-k3 /
k1 / fixed@2 / fixed@4 / detector x seeds 0-2 with known numbers (see ``SWEEP`` below), plus a
failed run (k1 seed 2), an incomplete one (fixed@2 seed 2, no robustness.json) and a missing
one (detector seed 2: in sweep.json, no directory).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from critical.io import atomic_write_csv, atomic_write_json, atomic_write_text

MODEL = "tiny_cnn"
DATASET = "synthetic"
MAX_EPOCHS = 6
K = 3
DETECTOR = "detector:layer_rotation@0.01"
TRAIN_FLOPS = 3e6  # training FLOPs per sample
PARAMS = 94_000

#: label -> policy, cut_at, {seed: (final val acc, wall time s, fgsm acc, detector cut epoch)};
#: matched runs: k = 1 for matched_epochs = K * cut_at + (MAX_EPOCHS - cut_at) epochs
SWEEP: dict[str, dict[str, Any]] = {
    "always-k3": {
        "policy": "always",
        "runs": {0: (0.90, 100.0, 0.30, None), 1: (0.92, 120.0, 0.40, None)},
    },
    "k1": {
        "policy": "k1",
        # time saving 60 % in both seeds, 6.7 pts short of the FLOPs-based 66.7 %: flagged
        "runs": {0: (0.80, 40.0, 0.20, None), 1: (0.82, 48.0, 0.22, None)},
        "failed": 2,
    },
    "matched-k1@2": {
        "policy": "matched",
        "cut_at": 2,
        "matched_epochs": 10,
        "runs": {0: (0.87, 62.0, 0.25, None), 1: (0.89, 68.0, 0.27, None)},
    },
    "matched-k1@4": {
        "policy": "matched",
        "cut_at": 4,
        "matched_epochs": 14,
        "runs": {
            0: (0.90, 85.0, 0.3, None),
            1: (0.905, 92.0, 0.3, None),
            2: (0.90, 88.0, 0.3, None),
        },
    },
    "fixed@2": {
        "policy": "fixed",
        "cut_at": 2,
        "runs": {0: (0.86, 60.0, 0.25, None), 1: (0.88, 66.0, 0.27, None)},
        "incomplete": 2,  # no robustness.json
    },
    "fixed@4": {
        "policy": "fixed",
        "cut_at": 4,
        "runs": {
            0: (0.905, 80.0, 0.3, None),
            1: (0.911, 96.0, 0.3, None),
            2: (0.908, 88.0, 0.3, None),
        },
    },
    DETECTOR: {
        "policy": "detector",
        "runs": {0: (0.89, 70.0, 0.3, 2), 1: (0.91, 90.0, 0.3, 4)},
        "missing": 2,
    },
}

KWH_PER_S = 1e-4  # energy = time * KWH_PER_S
CO2_PER_KWH = 0.4
PRICE = 0.13


def run_name(label: str, seed: int) -> str:
    return f"{MODEL}/{label.replace(':', '-')}-s{seed}"


def tags_for(label: str, seed: int) -> dict[str, Any]:
    spec = SWEEP[label]
    tags = {
        "sweep": "fake",
        "model": MODEL,
        "seed": seed,
        "policy": spec["policy"],
        "label": label,
        "k": 1 if spec["policy"] == "k1" else K,
    }
    if "cut_at" in spec:
        tags["cut_at"] = spec["cut_at"]
    if "matched_epochs" in spec:
        tags["matched_epochs"] = spec["matched_epochs"]
    return tags


def write_run(
    root: Path,
    name: str,
    *,
    tags: dict[str, Any] | None,
    acc: float,
    time_s: float,
    fgsm: float = 0.3,
    cut_epoch: int | None = None,
    k: int = K,
    epochs: int = MAX_EPOCHS,
    max_epochs: int = MAX_EPOCHS,
    robustness: bool = True,
    energy: bool = True,
    exception: str | None = None,
    metrics_json: bool = True,
    dataset: str | None = DATASET,
    model: str | None = MODEL,
    new_energy: bool = True,
    saving_check_agrees: bool = True,
    datamodule_hparams: dict[str, Any] | None = None,
    robustness_data: str = "val",
    clean_acc: float | None = None,
    val_metrics: bool = True,
    event_metrics: tuple[str, ...] = ("layer_rotation",),
) -> Path:
    """One run directory. ``val/acc`` rises linearly to ``acc`` at epoch ``max_epochs - 1``;
    wall time, energy, CO2 and cost are spread evenly over the epochs; an epoch at k has
    ``100 k`` samples and ``100 k TRAIN_FLOPS`` FLOPs. ``dataset`` / ``model`` go into the
    recorded hparams (``None``: not recorded); ``new_energy=False`` leaves out the compute
    fields of ``energy.json`` (an older run). ``robustness.json`` holds ``clean_acc`` (default
    ``acc``) on split ``robustness_data``; ``val_metrics=False``: no validation split (no
    ``val/*`` columns); ``event_metrics``: what a detector run's event says it read."""
    path = Path(root) / name
    path.mkdir(parents=True)
    module_hp: dict[str, Any] = {"lr": 0.1}
    if model is not None:
        module_hp["model"] = model
    data_hp: dict[str, Any] = {} if dataset is None else {"dataset": dataset}
    data_hp.update(datamodule_hparams or {})
    config = {
        "name": path.name,
        "path": str(path),
        "stage": "fit",
        "command": ["critical", "fit"],
        "module": {"class": "tests.TinyModule", "hparams": module_hp},
        "datamodule": {"class": "tests.TinyDataModule", "hparams": data_hp, "multiplicity": k},
        "trainer": {"max_epochs": max_epochs, "precision": "32-true"},
        # as `critical fit` runs have them: their result files are expected
        "callbacks": [
            {"class": "critical.callbacks.energy.EnergyTracker", "init_args": {}},
            {
                "class": "critical.callbacks.robustness.RobustnessEvaluator",
                "init_args": {"when": "fit_end"},
            },
        ],
    }
    if tags is not None:
        config["tags"] = tags
    atomic_write_json(path / "config.json", config)
    energy_kwh = time_s * KWH_PER_S
    rows = []
    for e in range(epochs):
        kk = k if cut_epoch is None or e < cut_epoch else 1
        row = {
            "epoch": e,
            "multiplicity": kk,
            "critical/critical_period_over": float(cut_epoch is not None and e >= cut_epoch - 1),
            "critical/gradient_confusion/mean": 0.1 / (e + 1),
            "critical/gradient_confusion/min": -0.2 / (e + 1),
            "critical/gradient_predictability": 0.5 - 0.05 * e,
            "critical/layer_rotation": 0.1 * (1 - math.exp(-e)),
            "critical/layer_rotation/net.conv": 0.2 * (1 - math.exp(-e)),  # per layer
            "critical/multiplicity": float(kk),
            "energy/duration_s": time_s / max_epochs,
            "energy/energy_kwh": energy_kwh / max_epochs,
            "train/loss": 2.0 / (e + 1),
        }
        if val_metrics:
            row["val/acc"] = acc * (e + 1) / max_epochs
        if new_energy:
            row["energy/flops"] = 100 * kk * TRAIN_FLOPS
        rows.append(row)
    if rows:
        atomic_write_csv(path / "metrics.csv", rows)
        if metrics_json:
            atomic_write_json(path / "metrics.json", rows)
    cut_event: dict[str, Any] = {"fired": False}
    if cut_epoch is not None:
        cut_event = {
            "fired": True,
            "cut_epoch": cut_epoch,
            "multiplicity_before": k,
            "multiplicity_after": 1,
            "source": "cutoff",
        }
        if tags and tags.get("policy") == "detector":
            cut_event["event"] = {
                "epoch": cut_epoch - 1,
                "reason": "stable",
                "metrics": list(event_metrics),
                "values": dict.fromkeys(event_metrics, 0.09),
                "changes": dict.fromkeys(event_metrics, 0.005),
            }
    atomic_write_json(path / "cut_event.json", cut_event)
    if energy:
        hist = [
            {
                "epoch": r["epoch"],
                "multiplicity": r["multiplicity"],
                "duration_s": time_s / max_epochs,
                "samples": 100 * r["multiplicity"],
                "energy_kwh": energy_kwh / max_epochs,
                "co2_kg": energy_kwh * CO2_PER_KWH / max_epochs,
                "cost": energy_kwh * PRICE / max_epochs,
            }
            for r in rows
        ]
        total = {
            "epochs": len(rows),
            "samples": sum(h["samples"] for h in hist),
            "duration_s": time_s,
            "energy_kwh": energy_kwh,
            "co2_kg": energy_kwh * CO2_PER_KWH,
            "cost": energy_kwh * PRICE,
        }
        summary: dict[str, Any] = {
            "country_iso_code": "USA",
            "region": None,
            "price_per_kwh": PRICE,
            "currency": "USD",
            "energy_measured": True,
            "missing": None,
            "fit_duration_s": time_s + 1.0,
            "cut": {
                "cut_epoch": cut_epoch,
                "source": "cutoff",
                "multiplicity_before": k,
                "multiplicity_after": None if cut_epoch is None else 1,
            },
            "total": total,
            "history": hist,
        }
        if new_energy:
            _add_compute_fields(summary, k, cut_epoch, max_epochs, saving_check_agrees)
        atomic_write_json(path / "energy.json", summary)
    if robustness:
        atomic_write_json(
            path / "robustness.json",
            {
                "stage": "fit_end",
                "epoch": max_epochs - 1,
                "global_step": 60,
                "data": robustness_data,
                "num_images": 16,
                "clean_acc": acc if clean_acc is None else clean_acc,
                "fgsm_acc": fgsm,
                "pgd_acc": fgsm / 2,
                "attack": {"norm": "Linf", "eps": 8 / 255},
                "corruption_acc": acc - 0.1,
                "corruption": {"source": "synthetic", "mean_acc": acc - 0.1},
            },
        )
    if exception is not None:
        atomic_write_text(
            path / "exception.txt",
            f"2025-01-01T00:00:00+00:00 epoch=2 global_step=20\nRuntimeError: {exception}\n",
        )
    return path


def _add_compute_fields(
    summary: dict[str, Any], k: int, cut: int | None, max_epochs: int, agrees: bool
) -> None:
    """The fields the EnergyTracker adds to ``energy.json`` (FLOPs, model, theoretical saving,
    saving check, measurement), as the report reads them."""
    for h in summary["history"]:
        h["flops"] = h["samples"] * TRAIN_FLOPS
    summary["total"]["flops"] = sum(h["flops"] for h in summary["history"])
    summary["model"] = {
        "params": PARAMS,
        "trainable_params": PARAMS,
        "flops_per_sample": {"train": TRAIN_FLOPS, "forward": TRAIN_FLOPS / 3},
        "input_shape": [1, 16, 16],
        "flops_method": "fixture",
    }
    theoretical = 0.0
    if cut is not None:
        theoretical = 1 - (k * cut + max_epochs - cut) / (k * max_epochs)
    summary["theoretical_saving"] = theoretical
    summary["saving_fraction"] = None if cut is None else {"flops": theoretical}
    summary["saving_check"] = (
        None
        if cut is None
        else {
            "agrees": agrees,
            "message": (
                "measured saving time agrees with the FLOPs-based saving within the noise"
                if agrees
                else "measured saving time falls short of the FLOPs-based saving by more "
                "than the noise"
            ),
        }
    )
    summary["measurement"] = {
        "cpu": {"method": "intel_rapl", "measured": True, "detail": "RAPL energy counters"},
        "gpu": {"method": None, "measured": False, "detail": "no GPU tracked"},
        "ram": {"method": "ram_model", "measured": False, "detail": "codecarbon's RAM model"},
    }
    summary["energy_available"] = True
    summary["energy_measured"] = False  # RAM is estimated


def make_fake_sweep(
    root: Path, clean: dict[str, dict[int, float]] | None = None, **run_kwargs: Any
) -> Path:
    """Write the fake sweep of ``SWEEP`` (and its sweep.json) under ``root``; returns root.
    ``clean``: ``{label: {seed: clean_acc}}`` overrides for ``robustness.json``; ``run_kwargs``
    go to every complete run's :func:`write_run` (``robustness_data="test"``, ...)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for label, spec in SWEEP.items():
        seeds = sorted(
            {*spec["runs"], *(spec[x] for x in ("failed", "incomplete", "missing") if x in spec)}
        )
        for seed in seeds:
            name = run_name(label, seed)
            tags = tags_for(label, seed)
            entries.append({"name": name, "tags": tags, "command": ["critical", "fit"]})
            matched = spec["policy"] == "matched"
            cut = None if matched else spec.get("cut_at")
            k = 1 if spec["policy"] in ("k1", "matched") else K
            epochs = spec.get("matched_epochs", MAX_EPOCHS)
            if seed in spec["runs"]:
                acc, t, fgsm, det_cut = spec["runs"][seed]
                write_run(
                    root,
                    name,
                    tags=tags,
                    acc=acc,
                    time_s=t,
                    fgsm=fgsm,
                    cut_epoch=det_cut if det_cut is not None else cut,
                    k=k,
                    epochs=epochs,
                    max_epochs=epochs,
                    # the detector's seed-0 run: its own check disagrees (30 % vs 44.4 %)
                    saving_check_agrees=not (spec["policy"] == "detector" and seed == 0),
                    clean_acc=(clean or {}).get(label, {}).get(seed),
                    **run_kwargs,
                )
            elif spec.get("failed") == seed:
                write_run(
                    root,
                    name,
                    tags=tags,
                    acc=0.5,
                    time_s=20.0,
                    k=k,
                    epochs=2,
                    robustness=False,
                    energy=True,
                    exception="boom",
                )
            elif spec.get("incomplete") == seed:
                write_run(
                    root,
                    name,
                    tags=tags,
                    acc=0.87,
                    time_s=63.0,
                    cut_epoch=cut,
                    k=k,
                    robustness=False,
                )
            # missing: no directory
    atomic_write_json(root / "sweep.json", {"name": "fake", "runs": entries})
    return root
