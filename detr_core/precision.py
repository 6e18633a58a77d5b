"""Which precision to train in on this CPU, decided from what the CPU really has.

bfloat16 autocast pays on a CPU only when it multiplies bf16 natively: the ``avx512_bf16``
instructions (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids) or AMX tiles
(``amx_bf16``, Intel Sapphire Rapids and later). Elsewhere, oneDNN emulates bf16 with AVX-512
and a training step runs about half as fast as in float32 (measured: ResNet-18 configuration
13.5 against 27.6 images/s). ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` answers yes on
every AVX-512 CPU, so it is not the test: the CPU's flags are.

The flags come from ``/proc/cpuinfo`` on Linux. Where they cannot be read (macOS, Windows, an
unusual kernel), the answer is float32, the safe choice, and the reason says so. ``--set bf16=on``
(or the training panel's checkbox) still overrides the choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Any one of these means native bfloat16 matrix maths on an x86 CPU.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    bf16: bool
    reason: str  # one line, for the CLI and the training panel

    @property
    def name(self) -> str:
        return "bfloat16" if self.bf16 else "float32"


def read_cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's feature flags (the ``flags`` line of the first processor), or None if unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return None


def cpu_description(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU's model name and its bfloat16-related flags, to print beside any speed figure."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    except OSError:
        pass
    flags = read_cpu_flags(cpuinfo) or frozenset()
    return {"cpu": model, "bf16_flags": sorted(f for f in flags if f in NATIVE_BF16_FLAGS or "bf16" in f or "amx" in f)}


def choose_precision(flags: Iterable[str] | None) -> PrecisionChoice:
    """bf16 exactly when ``flags`` include a native bfloat16 instruction set."""
    if flags is None:
        return PrecisionChoice(False, "float32: this CPU's feature flags could not be read")
    native = [f for f in NATIVE_BF16_FLAGS if f in set(flags)]
    if native:
        return PrecisionChoice(True, f"bfloat16 autocast: the CPU multiplies bf16 natively ({', '.join(native)})")
    return PrecisionChoice(False, "float32: the CPU has no native bfloat16 (no avx512_bf16 or amx_bf16), "
                                  "where bf16 would run about half as fast")


@lru_cache(maxsize=1)
def cpu_precision() -> PrecisionChoice:
    """The choice for the CPU this process runs on (read once)."""
    return choose_precision(read_cpu_flags())


def precision_note(bf16: bool) -> str:
    """One line saying which precision a CPU run uses and why (the CLI and the training panel)."""
    choice = cpu_precision()
    if bf16 == choice.bf16:
        return f"precision: {choice.reason}"
    what = "bfloat16 autocast" if bf16 else "float32"
    return f"precision: {what}, set by hand (bf16={'on' if bf16 else 'off'}); this CPU's own choice is {choice.reason}"
