"""Facts about the host machine that backends report and the benchmark suite records.

They live here, inside the backends package, so that a backend never imports the benchmark
suite (`lstm_engine.bench` imports these, not the other way round). Standard library only:
importing this module costs nothing.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 9B45"), from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), which a container may set below
    os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                   # not on Linux
        return os.cpu_count() or 1
