"""The detector and what defines it: backbone, positional encoding, transformer, heads, denoising
queries, the dense auxiliary head, the Hungarian matcher, the set criterion and post-processing."""
