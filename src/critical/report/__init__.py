r"""Tables and plots for a paper, from run directories: ``critical report RUNS_DIR``.

Reads every run directory below ``RUNS_DIR`` (any directory holding a ``config.json``, written by
:class:`~critical.callbacks.RunDirectory`; runs may be nested at any depth) and every
``sweep.json`` (the runs a sweep expects), groups the runs by *setting* and label (below), and
writes into ``--out`` (default ``RUNS_DIR/report``):

* ``summary.md``  -- Markdown: per setting, the summary table (one row per group, mean ± std over
  seeds), the compute-and-cost table, the cut policies against matched k = 1 and the
  detector-vs-fixed-cut comparison; then every run that is not complete, with what it lacks,
  and notes;
* ``summary.csv`` -- the same numbers, machine-readable, in base units (accuracies as fractions,
  seconds, kWh, kg, FLOPs), one column per statistic for the mean and one for the std, and the
  group's ``dataset``, ``budget``, ``energy_method``, ``saving_check``, ``beats_matched``;
* ``regret.csv``  -- the detector-vs-fixed-cut comparison (one row per detector group);
* ``matched.csv`` -- the cut policies against matched k = 1 (one row per fixed or detector group);
* ``runs.csv``    -- one row per run (every status), with its values and problems;
* ``summary.tex`` -- booktabs LaTeX ``tabular``\ s of the same tables, one block per setting;
* plots (PNG + PDF each): ``curves_<model>`` (``curves_<model>_<data>_E<budget>`` when a model
  has several settings; training-dynamics metrics and validation accuracy in % against epoch,
  with the cut epochs marked, the plotted runs' own included), ``pareto`` (accuracy vs energy,
  one panel and one front per setting) and ``accuracy_vs_cut`` (accuracy against the cut epoch,
  fixed cuts and matched k = 1, one panel per setting). A plot whose data are absent is skipped
  with a message. Accuracies are drawn in %.

No Lightning import: numpy, matplotlib (object-oriented API, Agg canvas, no display), csv, json.

Run status
----------
As :func:`critical.runfiles.run_status` decides it, the one rule ``critical sweep`` uses too:
``complete``; ``failed`` (``exception.txt`` exists); ``incomplete`` (no metric rows, fewer epoch
rows than ``config.json["trainer"]["max_epochs"]``, a result file of a callback the run had
missing -- ``energy.json`` with an EnergyTracker, ``robustness.json`` with a RobustnessEvaluator
evaluating at fit end -- or an unreadable / missing file); ``missing`` (listed in a
``sweep.json``, no directory). Only complete runs enter the statistics; every other run is listed in the report
with its problems, and counted in its group's ``n`` as ``complete/all``.

Settings, groups and tags
-------------------------
Runs are compared only within one *setting* (:class:`Setting`): the data set, the model and the
budget. Baselines, savings, the matched comparison, regret, Pareto fronts and curves never mix
settings; the report has one section (and one plot panel) per setting.

* data set: ``config.json["datamodule"]["hparams"]["dataset"]``; ``folder:<root>`` for an image
  folder; a ``train_size`` or ``image_size`` that is set is appended (``cifar10[train_size=5000,
  image_size=16]``); else a ``dataset`` tag; else ``"-"``;
* model: the ``model`` tag, else ``config.json["module"]["hparams"]["model"]``, else ``"-"``;
* budget (epochs): the ``budget`` tag, else ``config.json["trainer"]["max_epochs"]``; a matched
  k = 1 run without the tag belongs to the budget it matches, ``matched_epochs - (k - 1) *
  cut_at``;
* a run without a ``config.json`` (a missing sweep run) takes the setting its sweep's runs of
  the same model (and budget tag) share, when they share one.

Within a setting, runs are grouped by label. ``config.json["tags"]`` (the ``sweep.json`` entry's
tags fill in keys the config lacks): ``model``, ``label``, ``seed``, ``policy`` (``"always"``,
``"k1"``, ``"matched"``, ``"fixed"``, ``"staged"``, ``"detector"``), ``k``, ``cut_at`` (a cut
run's first epoch at k = 1, a staged cut's first epoch below k; a matched run's: the cut epoch it
matches), ``matched_epochs``, ``budget``. A run without tags is its own group, label = its name.
Without a ``policy`` tag, it is read from the label (``always...``, ``k1``, ``matched...``,
``fixed@N``, ``staged@N``, ``detector...``), else from the run's ``AugmentationCutoff`` (a
fixed cut with ``stages`` is ``"staged"``); without ``cut_at``, from a ``fixed@N`` /
``staged@N`` / ``matched-k1@N`` label. A staged cut (k stepped down through its stages to 1) is
listed, drawn and saved against always-k like a fixed cut, but it is not one: it never enters
the best fixed cut, the oracle or the matched comparison (a matched run has the step count of
the one-step cut). ``config.json["alias_of"]`` (a copy of another run's
training, made by the sweep) is listed in ``runs.csv``.

Per-run values (:func:`run_values`)
-----------------------------------
``acc``: the last non-empty value of ``accuracy_key`` (default ``val/acc``) in the metric rows
(the last epoch's); ``test_acc``: likewise for ``test/acc`` when logged; every ``*_acc`` number
at the top level of ``robustness.json`` (``clean_acc``, ``fgsm_acc``, ``pgd_acc``,
``corruption_acc``); ``time_s``, ``energy_kwh``, ``co2_kg``, ``cost``: ``energy.json["total"]``
(sums over the recorded training epochs, validation included; an oracle branch's restored
history includes its parent's epochs); wall time falls back to the sum of the
``energy/duration_s`` column; ``cut_epoch``: ``cut_event.json["cut_epoch"]`` (the first epoch
trained at the reduced k), else ``energy.json["cut"]["cut_epoch"]``, else the first epoch whose
``multiplicity`` differs from epoch 0's; none for a run that never cut. ``flops``: total training
FLOPs, ``energy.json["total"]["flops"]``, else the sum of the ``energy/flops`` column;
``params``: ``energy.json["model"]["params"]``. A run that predates a field has no value for it
(an empty cell), never an error.

Statistics (:func:`summarize`)
------------------------------
Mean and *sample* standard deviation (``ddof=1``; none for a single seed) over the complete runs
of a group, per value; ``cut_epoch`` over the runs that cut (``n_cut`` of them).

Savings against the always-k baseline of the same setting (its group with policy ``"always"``
and at least one complete run; with several, the one with the same ``k`` tag, else the one of
largest ``k``),
per run, then mean ± std::

    time_saving_pct   = 100 * (1 - time_s / base_time_s)
    energy_saving_pct = 100 * (1 - energy_kwh / base_energy_kwh)
    co2_saving_pct    = 100 * (1 - co2_kg / base_co2_kg)
    flops_saving_pct  = 100 * (1 - flops / base_flops)
    acc_delta_pts     = 100 * (acc - base_acc)          (accuracy points; negative = worse)

where ``base_*`` is the baseline's complete run with the same seed (the mean of them if there are
several), else, per quantity, the baseline's mean over its complete runs. The baseline's own
row is therefore 0 ± 0. The *theoretical* saving counts epochs, not measurements::

    theoretical_saving_pct = 100 * (1 - sum over the run's epochs of k_e / (k * E))

with ``k_e`` the run's multiplicity in epoch e and ``k * E`` the baseline's (the sum of its k
over its epochs); for a cut at epoch e of E epochs from k to 1 it is ``1 - (k e + E - e) / (k
E)``, for k = 1 throughout ``1 - 1/k`` (a staged cut's, from its epochs at each stage). Without a baseline, or a run without multiplicities, it
is ``100 * energy.json["theoretical_saving"]``.

Matched k = 1 (:attr:`Summary.matched`). Each complete run of a cut policy (``fixed``,
``detector``) is compared with the matched k = 1 run (policy ``"matched"``) of the same setting,
seed and cut epoch (its ``cut_at`` tag, else its measured cut epoch): k = 1 for as many
optimizer steps, its schedule spread over them. ``acc_vs_matched_pts = 100 * (acc -
matched_acc)`` (the mean of the matched runs when there are several), then mean ± std over
seeds. The group *beats* matched k = 1 when that mean minus two standard errors (``std /
sqrt(n)``, n >= 2 seeds) is above 0 (``"yes"``); when the mean is <= 0: ``"no: the saving came
from training less"``; otherwise ``"not beyond the noise"``; a group none of whose runs cut:
``"never cut: nothing to match"``. Runs without a matched run, and settings without matched
runs, are left out (a note names the runs).

Measured vs compute (``Group.check``, the "Measured vs compute" column). Per run,
``time_vs_compute_pts = time_saving_pct - flops_saving_pct`` (the theoretical saving where FLOPs
were not recorded), likewise ``energy_vs_compute_pts``; per group, mean over seeds ``d`` and standard error ``se``. A
measured saving *disagrees* when ``|d| > max(saving_tolerance, 2 se)`` (``saving_tolerance``
default 5 points, ``critical report --saving-tolerance``): flagged in the table and the notes.
Runs whose own ``energy.json["saving_check"]["agrees"]`` is false (the EnergyTracker's check of
its counterfactual saving) are counted in the column and quoted in the notes. The "Energy"
column says how the energy was obtained: ``energy.json["energy_method"]`` (``measured``: every
tracked component by hardware counters, ``partly estimated``, ``estimated``), else derived from
``energy.json["measurement"]``, ``not recorded`` for older runs; the component details follow
the table.

Detector vs fixed cuts, per setting (:class:`Summary` ``.oracles``, keyed by :class:`Setting`,
and ``.regret``). With ``A(g)`` the mean accuracy of group ``g``, the fixed cuts ``F`` = groups
with policy ``"fixed"`` and a finite ``A``, each at cut epoch ``c(g)`` (tag ``cut_at``, else the
label's ``fixed@N``, else its mean measured cut epoch), and ``a`` the always-k baseline:

* ``best fixed`` = argmax over ``F`` of ``A`` (ties: the earlier cut);
  ``accuracy_regret_pts(d) = 100 * (A(best fixed) - A(d))`` for each detector group ``d``
  (positive: the detector lost accuracy that some fixed cut kept), and
  ``accuracy_regret_vs_always_pts(d) = 100 * (A(a) - A(d))``;
* ``oracle cut`` = the fixed cut of smallest ``c`` with ``100 * (A(g) - A(a)) >= -tolerance``
  (within ``tolerance`` points of always-k or better; ``k1`` is not a fixed cut); none if no
  fixed cut qualifies or there is no baseline;
* cut epochs are never averaged across seeds: ``cut_epochs`` lists each seed's cut epoch in seed
  order (``never`` for a run that did not cut; one value when they agree), ``cut_epoch`` is the
  cut every seed shares, else empty;
* against the oracle: ``cut_deltas``, each seed's ``cut(d) - c(oracle)`` (positive: the detector
  cut later than needed; ``cut_delta_epochs`` when every seed cut at the same epoch), ``energy_vs_oracle_pct = 100 * (E(d) / E(oracle) - 1)`` with ``E`` the
  groups' mean energy (positive: the detector spent more), the same for time
  (``time_vs_oracle_pct``), and ``acc_vs_oracle_pts = 100 * (A(d) - A(oracle))``;
* the matched comparison: ``acc_vs_matched_pts`` and ``beats_matched`` (its verdict).

Modules
-------
:mod:`~critical.report.runs` (reading run directories, settings), :mod:`~critical.report.costs`
(FLOPs, parameters, how energy was measured), :mod:`~critical.report.stats` (groups,
statistics), :mod:`~critical.report.baselines` (savings, matched k = 1, measured vs compute,
regret), :mod:`~critical.report.analysis` (:func:`summarize`), :mod:`~critical.report._format`, :mod:`~critical.report.markdown`,
:mod:`~critical.report.latex`, :mod:`~critical.report.tables` (CSV), :mod:`~critical.report.plots`
and :mod:`~critical.report.run_plot` (matplotlib, imported lazily), :mod:`~critical.report.cli`
(``write_report``, ``main``); each imports only the ones listed before it (no import
circle). Every public name is importable from :mod:`critical.report`.

Example:
    >>> import tempfile
    >>> from critical.report import load_runs, summarize, to_markdown
    >>> runs = load_runs(tempfile.mkdtemp())  # an empty directory: no runs
    >>> runs
    []
    >>> print(to_markdown(summarize(runs)).splitlines()[0])
    # Summary
"""

from critical.report.analysis import summarize
from critical.report.cli import ReportFiles, main, write_report
from critical.report.comparison_plots import pareto_front, plot_accuracy_vs_cut, plot_pareto
from critical.report.plots import NoDataError, plot_curves
from critical.report.run_plot import describe_run, plot_run
from critical.report.runs import POLICIES as POLICIES  # public, not in __all__ (as before)
from critical.report.runs import STATUSES, Run, Setting, load_run, load_runs
from critical.report.stats import Group, Stat, Summary, run_values
from critical.report.tables import latex_escape, to_latex, to_markdown, write_csv

__all__ = [
    "STATUSES",
    "Group",
    "NoDataError",
    "ReportFiles",
    "Run",
    "Setting",
    "Stat",
    "Summary",
    "describe_run",
    "latex_escape",
    "load_run",
    "load_runs",
    "main",
    "pareto_front",
    "plot_accuracy_vs_cut",
    "plot_curves",
    "plot_pareto",
    "plot_run",
    "run_values",
    "summarize",
    "to_latex",
    "to_markdown",
    "write_csv",
    "write_report",
]
