"""The doctor: "why does it predict nothing?" answered before, during and after training.

- :mod:`~detr_core.doctor.data_checks`: the annotations as declared (before the loaders clip or
  skip anything), checked for the mistakes that make DETR learn nothing.
- :mod:`~detr_core.doctor.overfit`: overfit one batch; if the model cannot, the pipeline is broken.
- :mod:`~detr_core.doctor.watch`: warnings on a live run (no-object collapse, flat or diverging
  loss, gradient always clipped, queries ignoring the image).
- :mod:`~detr_core.doctor.report`: all of it as Markdown.
"""

from detr_core.doctor.data_checks import Finding, check_dataset

__all__ = ["Finding", "check_dataset"]
