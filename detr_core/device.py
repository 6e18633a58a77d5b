"""Device choice: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask where the system has one, and no more
    than its cgroup's CPU quota (a container or CI runner limited to 1.5 CPUs gets 2)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cpu_quota(cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPU time this process's cgroup may use, in cores (``cpu.max`` of cgroup v2, or
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of v1, the smallest along the path up to the
    root), as containers and CI runners set it; None when there is no limit or no cgroup."""
    root = Path(cgroup_root)
    try:
        lines = Path(self_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        if controllers == "":  # v2: one hierarchy, "0::/path"
            folders, read = [root], _v2_quota
        elif "cpu" in names:
            folders, read = [root / controllers, root / "cpu"], _v1_quota
        else:
            continue
        for base in folders:
            node = base / path.lstrip("/")
            while True:
                quota = read(node)
                if quota is not None:
                    limits.append(quota)
                if node == base or base not in node.parents:
                    break
                node = node.parent
    return min(limits) if limits else None


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


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
