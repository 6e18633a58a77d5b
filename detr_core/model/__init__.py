"""The detector and what defines it.

- ``registry``: ``build_model(config)``, the model families by name; one module per family:
  ``detr`` (backbone + transformer + heads) and ``deformable`` (Deformable DETR);
  ``capture_protocol``: what every family reports of a forward pass with ``capture=True``.
- Shared parts: ``backbone``, ``position_encoding``, ``transformer``, ``nested_tensor``;
  ``denoising``: DN-DETR's denoising queries; ``dense_head``: the dense one-to-many auxiliary head.
- ``matcher``: the Hungarian matcher; ``losses``: the set criterion and its loss weights, one
  explicit dict built in one place (``loss_terms``).
- ``postprocess``: class probabilities, scores and detections from the raw outputs.
"""
