"""``critical sweep``: a grid of cut policies x models x budgets x seeds, run here or spread over
a cluster, with the baselines an honest comparison needs.

A sweep is a YAML file::

    name: cifar10_cpu
    config: experiments/cifar10_cpu.yaml   # the `critical fit` config every run starts from
    models: [cifar_resnet20]               # optional: values of --model.model
    seeds: [0, 1, 2]                       # --seed_everything (the data split seed stays fixed)
    budgets: [15, 40]                      # optional: values of --trainer.max_epochs
    k: 3                                   # multiplicity before the cut
    policies:
      always: true                         # k throughout (cutoff never)
      k1: true                             # k = 1 throughout, same epochs
      matched: true                        # k = 1 with as many optimizer steps as each cut run
                                           #   ("detectors": for the detectors' cuts only)
      fixed: [0.1, 0.25, 0.5]              # cut after E epochs (int) or a fraction of the budget
      staged:                              # staged cuts, k = 3 -> 2 -> 1 (no matched k = 1 runs)
        stages: [2]                        #   the k between k and 1, strictly decreasing
        fixed: [0.25, 12]                  #   their cut epochs, as `fixed`
      detector:                            # cut when the detector fires
        - {}                               #   the library's default detector
        - {name: accordion, monitor: gradient_norm, mode: relative, threshold: 0.5, patience: 1}
    oracle: true                           # cuts branch off the always-k run (see below)
    validate: end                          # validate once, after each run's last epoch
                                           #   ("trunk": every epoch in the always-k run, whose
                                           #   logged val/loss detectors may read; end elsewhere)
    args: ["--data.train_size=2000"]       # extra flags for every run

Every run is one ``critical fit`` command with its own run directory ``OUT/<run name>`` and tags
(``model``, ``seed``, ``budget``, ``policy``, ``label``, ``k``, ``cut_at``, ``stages``,
``parent``, ``branch_epoch``, ``detector``, ``fired``, ``replay``, ``matched_epochs``) in its
``config.json``; ``OUT/sweep.json`` lists every run planned so far, so ``critical report OUT``
shows missing runs as missing. Detector settings not given in an entry are the library's
defaults (:data:`critical.detector.DEFAULTS`), never the fit config's.

**Branches and replay** (``oracle: true``, as in Fukase et al.'s experiments). Before its cut, a
cut run *is* the always-k run. So the always-k run of each model, budget and seed saves a
checkpoint after every epoch a branch may need (at the very end of the epoch, so it holds the
epoch's metrics, energy and detector state), and each fixed cut at E is a *branch* resumed from
the checkpoint after epoch E - 1 with k = 1 from there. A detector is *replayed* on the always-k
run's logged metrics (:func:`critical.detector.replay`, the same code the live callback runs) as
soon as that run has finished: if it fires after epoch f, its run is the branch from the
checkpoint after epoch f; if it never fires, its run is the always-k run itself (a copy, no
training); two policies that cut at the same epoch share one branch. A branch pays only for the
epochs after its cut.

**Checkpoints gone** (``--run``). A branch whose checkpoint is missing while its trunk has
finished (checkpoints deleted to save disk, or left on another machine; the sweep grown later)
does not fail: the trunk's own command trains its first epochs again into ``OUT/.regrow/`` up to
the last one a pending branch needs (:class:`~critical.callbacks.StopAfterEpoch`, the schedule
unchanged), its metric rows are compared with the finished trunk's (``regrow.json``: equal on
the same machine and thread count), and the branch resumes from the new checkpoint
(:mod:`critical.sweep.regrow`).

**Staged cuts** (``staged``: ``stages`` and a ``fixed`` list of its own). ``staged@e`` steps k
down from epoch e through the stages to 1, the epochs left split evenly among them
(``--cutoff.policy=fixed --cutoff.epoch=e --cutoff.stages=[2]``,
:class:`~critical.callbacks.AugmentationCutoff`'s ``stages``): with ``oracle``, a branch off the
same checkpoint as ``fixed@e``, never sharing its training. No matched k = 1 run is planned for
it, and ``critical report`` neither takes it for a fixed cut (the oracle, the best fixed cut) nor
compares it with ``matched-k1@e``. Each step needs an epoch at least: a cut leaving fewer epochs
than steps is an error.

**Matched k = 1** (``matched: true``; budgeted training, Li et al., ICLR 2020). For each distinct
cut epoch c of a model, budget and seed, k = 1 trained for ``k * c + (E - c)`` epochs: as many
optimizer steps as the cut run (epoch layout), its cosine schedule spread over that budget. If
it is as good as the cut run, the cut run's saving came from training less, not from the
critical period; ``critical report`` shows every policy against always-k and against it.

Modes: ``--run`` (default) runs everything here, group by group (a model, budget and seed: its
always-k run, its branches, its matched runs), skipping finished run directories and planning
again after each run; ``--emit`` prints one command per run that can be planned now, and the
command to run again once they finished; ``--slurm FILE`` writes a script submitting each stage
as a job array, with a last job that plans and submits the runs that depend on them.

Example:
    >>> spec = {"name": "demo", "config": "experiments/quickstart.yaml", "seeds": [0],
    ...         "k": 3, "policies": {"always": True, "fixed": [2], "matched": True},
    ...         "oracle": True}
    >>> [(r.name, r.stage) for r in plan(spec, out="runs/demo")]
    [('small_cnn-always-k3-s0', 1), ('small_cnn-fixed_2-s0', 2), ('small_cnn-matched-k1_2-s0', 3)]
"""

from critical.sweep.plan import followups_pending, plan
from critical.sweep.runner import emit, main, materialize_alias, run_local, slurm_script
from critical.sweep.spec import DETECTOR_KEYS, POLICY_KEYS, Run, check_spec, load_spec

__all__ = [
    "DETECTOR_KEYS",
    "POLICY_KEYS",
    "Run",
    "check_spec",
    "emit",
    "followups_pending",
    "load_spec",
    "main",
    "materialize_alias",
    "plan",
    "run_local",
    "slurm_script",
]
