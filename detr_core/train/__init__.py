"""Training.

- ``trainer``: the Qt-free training loop, a generator of events, with its ``History`` (the one
  place step columns are kept and thinned) and ``TrainControl`` (pause, step, stop).
- ``live``: training in a child process, with probes and commands between steps.
- ``ablations``, ``runs``, ``run_store``: comparable runs: their specs, how one is trained and
  evaluated, and the folder that keeps their records and checkpoints.
"""
