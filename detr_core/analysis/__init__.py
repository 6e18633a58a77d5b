"""Looking inside a model: inference with attention capture, heatmaps, COCO evaluation, AP layer by
layer, query specialization, counting, Hungarian matching made visible, duplicate statistics."""
