"""Hardware-aware AutoML: Optuna studies over ArchSpec, constrained and priced by one target.

    edgefer search --target coral --dataset ckplus --trials 30            # run or resume
    edgefer search show --target coral --dataset ckplus                   # best + Pareto set

See ``search`` for the objectives, pruning and storage, ``space`` for the search space and
``targets`` for how each device rejects specs and prices trained models.
"""
