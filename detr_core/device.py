"""Device choice: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import os
import sys

import torch


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def clamp_threads(threads: int) -> int:
    """``threads`` limited to the usable cores: more threads than cores only make torch slower
    (999 threads ran about 180 times slower than 2 on a 2-core machine)."""
    return max(1, min(int(threads), usable_cores()))


def skip_triton_without_cuda() -> bool:
    """Keep triton out of a process that has no CUDA device; True when it did so.

    torchvision imports ``torch._dynamo``, which imports triton whenever it is installed (the
    CUDA wheels of torch bring it). Without a CUDA device triton has nothing to do, and at exit
    its bindings print some thirty lines of "nanobind: leaked ..." (triton-lang/triton#10921),
    which read like a crash after every clean run of the app. ``import triton`` then fails as
    if it were not installed, which torch handles (inductor's CPU code does not use triton).
    With a CUDA device nothing changes.
    """
    if "triton" in sys.modules or torch.cuda.is_available():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # "import triton" raises ImportError
    return True


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA was asked for but no CUDA device is available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_summary(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"
