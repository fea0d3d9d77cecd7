r"""Tables and plots for a paper, from run directories: ``critical report RUNS_DIR``.

Reads every run directory below ``RUNS_DIR`` (any directory holding a ``config.json``, written by
:class:`~critical.callbacks.RunDirectory`; runs may be nested at any depth) and every
``sweep.json`` (the runs a sweep expects), groups the runs by ``(model, label)`` from
``config.json["tags"]``, and writes into ``--out`` (default ``RUNS_DIR/report``):

* ``summary.md``  -- Markdown: one row per group, mean ± std over seeds, the detector-vs-fixed-cut
  comparison, and the list of every run that is not complete, with what it lacks;
* ``summary.csv`` -- the same numbers, machine-readable, in base units (accuracies as fractions,
  seconds, kWh, kg), one column per statistic for the mean and one for the std;
* ``regret.csv``  -- the detector-vs-fixed-cut comparison (one row per detector group);
* ``runs.csv``    -- one row per run (every status), with its values and problems;
* ``summary.tex`` -- a booktabs LaTeX ``tabular`` of the summary (and one of the comparison);
* plots (PNG + PDF each): ``curves_<model>`` (training-dynamics metrics and validation accuracy
  against epoch, with the cut epochs marked), ``pareto`` (accuracy vs energy) and
  ``accuracy_vs_cut`` (accuracy against the cut epoch). A plot whose data are absent is skipped
  with a message.

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

Groups and tags
---------------
``config.json["tags"]`` (the ``sweep.json`` entry's tags fill in keys the config lacks): ``model``,
``label``, ``seed``, ``policy`` (``"always"``, ``"k1"``, ``"fixed"``, ``"detector"``), ``k``,
``cut_at``. A run without tags is its own group: model ``"-"``, label = its name. Without a
``policy`` tag, it is read from the label (``always...``, ``k1``, ``fixed@N``, ``detector...``).

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
``multiplicity`` differs from epoch 0's; none for a run that never cut.

Statistics (:func:`summarize`)
------------------------------
Mean and *sample* standard deviation (``ddof=1``; none for a single seed) over the complete runs
of a group, per value; ``cut_epoch`` over the runs that cut (``n_cut`` of them).

Saving against the always-k baseline of the same model (its group with policy ``"always"`` and
at least one complete run; with several, the one with the same ``k`` tag, else the one of largest
``k``), per run, then mean ± std::

    time_saving_pct   = 100 * (1 - time_s / base_time_s)
    energy_saving_pct = 100 * (1 - energy_kwh / base_energy_kwh)
    co2_saving_pct    = 100 * (1 - co2_kg / base_co2_kg)
    acc_delta_pts     = 100 * (acc - base_acc)          (accuracy points; negative = worse)

where ``base_*`` is the baseline's complete run with the same seed (the mean of them if there are
several), else, per quantity, the baseline's mean over its complete runs. The baseline's own
row is therefore 0 ± 0.

Detector vs fixed cuts, per model (:class:`Summary` ``.oracles`` and ``.regret``). With ``A(g)``
the mean accuracy of group ``g``, the fixed cuts ``F`` = groups with policy ``"fixed"`` and a
finite ``A``, each at cut epoch ``c(g)`` (tag ``cut_at``, else the label's ``fixed@N``, else its
mean measured cut epoch), and ``a`` the always-k baseline (with several always-k groups, the
one of largest ``k``):

* ``best fixed`` = argmax over ``F`` of ``A`` (ties: the earlier cut);
  ``accuracy_regret_pts(d) = 100 * (A(best fixed) - A(d))`` for each detector group ``d``
  (positive: the detector lost accuracy that some fixed cut kept);
* ``oracle cut`` = the fixed cut of smallest ``c`` with ``100 * (A(g) - A(a)) >= -tolerance``
  (within ``tolerance`` points of always-k or better; ``k1`` is not a fixed cut); none if no
  fixed cut qualifies or there is no baseline;
* against the oracle: ``cut_delta_epochs = mean cut(d) - c(oracle)`` (positive: the detector cut
  later than needed), ``energy_vs_oracle_pct = 100 * (E(d) / E(oracle) - 1)`` with ``E`` the
  groups' mean energy (positive: the detector spent more), the same for time
  (``time_vs_oracle_pct``), and ``acc_vs_oracle_pts = 100 * (A(d) - A(oracle))``.

Modules
-------
:mod:`~critical.report.runs` (reading run directories), :mod:`~critical.report.stats`
(statistics, savings, regret), :mod:`~critical.report.tables` (Markdown, LaTeX, CSV),
:mod:`~critical.report.plots` (matplotlib, imported lazily), :mod:`~critical.report.cli`
(``write_report``, ``main``); each imports only the ones listed before it. Every public name is
importable from :mod:`critical.report` itself.

Example:
    >>> import tempfile
    >>> from critical.report import load_runs, summarize, to_markdown
    >>> runs = load_runs(tempfile.mkdtemp())  # an empty directory: no runs
    >>> runs
    []
    >>> print(to_markdown(summarize(runs)).splitlines()[0])
    # Summary
"""

from critical.report.cli import ReportFiles, main, write_report
from critical.report.plots import (
    NoDataError,
    pareto_front,
    plot_accuracy_vs_cut,
    plot_curves,
    plot_pareto,
    plot_run,
)
from critical.report.runs import POLICIES as POLICIES  # public, not in __all__ (as before)
from critical.report.runs import STATUSES, Run, load_run, load_runs
from critical.report.stats import Group, Stat, Summary, run_values, summarize
from critical.report.tables import latex_escape, to_latex, to_markdown, write_csv

__all__ = [
    "STATUSES",
    "Group",
    "NoDataError",
    "ReportFiles",
    "Run",
    "Stat",
    "Summary",
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
