"""DETR Explorer: the Qt window over ``detr_core``. It talks to the core only through its API."""
