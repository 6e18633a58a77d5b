"""DETR core: model, matching, losses, toy data, training, checkpoints, inference, evaluation.

Plain PyTorch; never imports Qt (a test enforces it).
"""
