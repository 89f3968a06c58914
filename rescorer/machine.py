"""What machine this is: the CPU's name and the instruction-set features that decide which number
formats run fast, for the benchmarks' reports and for the warnings of options that need them."""
from __future__ import annotations

import os
import platform

# the features that matter here: AVX2 (int8 scoring), AVX-512 with BF16 and VNNI, AMX
FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
# bfloat16 matrix products run at more than the fp32 rate only with one of these
BF16_FEATURES = ("avx512_bf16", "amx_bf16")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_features() -> list[str]:
    """Those of ``FEATURES`` the CPU reports (an empty list where /proc/cpuinfo is not readable)."""
    flags = (_cpuinfo_field("flags") or "").split()
    return [w for w in FEATURES if w in flags]


def bf16_shortfall() -> str | None:
    """None when the CPU has bfloat16 instructions, else what it lacks (for a warning)."""
    if any(f in cpu_features() for f in BF16_FEATURES):
        return None
    return f"this CPU ({cpu_name()}) has neither AVX-512 BF16 nor AMX"


def describe() -> dict:
    """The machine for a report: CPU, features, cores, memory, Python, torch and a GPU if any."""
    import torch  # here, not above: the decoder's commands describe the machine without torch's start-up
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu_name(), "features": cpu_features(), "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
