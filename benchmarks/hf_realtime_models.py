"""Small-but-real D-FINE, DEIMv2, LW-DETR and RF-DETR models for ``benchmarks/hf_families.py``
(random weights built with transformers' config classes; nothing is downloaded):

- D-FINE and DEIMv2: D-FINE-S's layout (HGNetV2-B0, hybrid encoder 256 wide, 3 decoder layers,
  3-6-3 sampling points per level, 300 queries) on a 640 x 480 input;
- LW-DETR: LW-DETR-small's (a ViT 192 wide, 10 layers, 16 windows, one level, 3 decoder layers,
  300 queries) on a 640 x 512 input (a multiple of its windows' 64 px);
- RF-DETR: RF-DETR-base's (DINOv2-S: 384 wide, 12 layers, patch 14, 4 x 4 windows, one level,
  3 decoder layers, 300 queries) on a 560 x 448 input (a multiple of its windows' 56 px).
"""

from __future__ import annotations

FAMILIES = ("d_fine", "deimv2", "lw_detr", "rf_detr")


def build(family: str):
    """A transformers detector of ``family`` with random weights, and its input size (H, W)."""
    import transformers as tf

    labels = {"id2label": {i: f"class {i}" for i in range(80)}}
    if family in ("d_fine", "deimv2"):
        backbone = tf.HGNetV2Config(stem_channels=[3, 16, 16], stage_in_channels=[16, 64, 256, 512],
                                    stage_mid_channels=[16, 32, 64, 128], stage_out_channels=[64, 256, 512, 1024],
                                    stage_num_blocks=[1, 1, 2, 1], stage_light_block=[False, False, True, True],
                                    stage_kernel_size=[3, 3, 5, 5], stage_numb_of_layers=[3, 3, 3, 3],
                                    use_learnable_affine_block=True, hidden_sizes=[64, 256, 512, 1024],
                                    depths=[1, 1, 2, 1], out_features=["stage2", "stage3", "stage4"])
        shared = dict(backbone_config=backbone, encoder_in_channels=[256, 512, 1024], decoder_layers=3,
                      decoder_n_points=[3, 6, 3], hidden_expansion=0.5, depth_mult=0.34, num_queries=300, **labels)
        if family == "d_fine":
            return tf.DFineForObjectDetection(tf.DFineConfig(**shared)).eval(), (480, 640)
        return tf.Deimv2ForObjectDetection(tf.Deimv2Config(**shared)).eval(), (480, 640)
    if family == "lw_detr":
        backbone = tf.LwDetrViTConfig(hidden_size=192, num_hidden_layers=10, num_attention_heads=3, image_size=640,
                                      window_block_indices=[0, 1, 3, 6, 7, 9], out_indices=[2, 4, 5, 9],
                                      num_windows=16)
        config = tf.LwDetrConfig(backbone_config=backbone, projector_scale_factors=[1.0], decoder_layers=3,
                                 decoder_n_points=2, num_queries=300, **labels)
        return tf.LwDetrForObjectDetection(config).eval(), (512, 640)
    backbone = tf.RfDetrDinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, patch_size=14,
                                     image_size=518, num_windows=4,
                                     out_features=["stage2", "stage5", "stage8", "stage11"])
    config = tf.RfDetrConfig(backbone_config=backbone, decoder_layers=3, decoder_n_points=2, num_queries=300, **labels)
    return tf.RfDetrForObjectDetection(config).eval(), (448, 560)
