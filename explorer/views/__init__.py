"""Analysis views (query specialization, matching, layer by layer, counting, ablations)."""
