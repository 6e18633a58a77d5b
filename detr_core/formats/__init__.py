"""Other libraries' model files: Hugging Face ``save_pretrained`` folders (``hf``) and the
official facebookresearch/detr format (``reference``), read and written; ``torch.export``
programs (``pt2``), written."""
