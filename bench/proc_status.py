"""Memory figures of the running process from ``/proc/self/status`` (Linux), shared by the
benches that measure peak resident memory in a fresh subprocess."""
from __future__ import annotations


def status_mb(field: str) -> float:
    """A ``kB`` line of /proc/self/status (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} line")
