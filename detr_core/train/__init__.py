"""Training: the Qt-free training loop (a generator of events), live training in a child process,
and comparable runs (the ablations, their records and store)."""
