"""What a figure was measured on: the machine, the software, the threads, the date, the load."""

from __future__ import annotations

import datetime
import os
import platform


def load_1m() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def machine(threads: str | int) -> dict:
    """Platform, CPU, cores, Python, torch, ``threads``, today's date and the load now."""
    import torch

    return {"platform": platform.platform(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "threads": threads, "date": datetime.date.today().isoformat(), "load_1m": load_1m()}
