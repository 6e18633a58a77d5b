"""The detector and what defines it.

- ``detr``: the DETR module (backbone + transformer + heads); ``backbone``, ``position_encoding``,
  ``transformer``, ``nested_tensor``: its parts; ``denoising``: DN-DETR's denoising queries;
  ``dense_head``: the dense one-to-many auxiliary head.
- ``matcher``: the Hungarian matcher; ``losses``: the set criterion and its loss weights, one
  explicit dict built in one place (``loss_terms``).
- ``postprocess``: class probabilities, scores and detections from the raw outputs.
"""
