"""Peak memory and time of a call, shared by the benchmarks (run them as scripts: this folder is on
their import path).

On CUDA the peak is ``torch.cuda.max_memory_allocated`` above what was allocated before. On the
CPU, torch's allocations are invisible to tracemalloc, so the peak is the process's peak resident
set (VmHWM, reset through /proc/self/clear_refs; Linux only) above its resident set before the
call: run each configuration in a fresh process (`run_child`) so earlier ones do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak(device: str = "cpu") -> int:
    """Start a peak measurement; returns the bytes in use now."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident set
    return status_kib("VmRSS") * 1024


def peak_bytes(device: str = "cpu") -> int:
    """The peak since `reset_peak`, in bytes (absolute: subtract what `reset_peak` returned)."""
    return torch.cuda.max_memory_allocated() if device == "cuda" else status_kib("VmHWM") * 1024


def measure(fn, repeats: int = 1, device: str = "cpu"):
    """(peak bytes the calls added, best seconds of ``repeats`` calls, the last call's result)."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    before = reset_peak(device)
    seconds, out = [], None
    for _ in range(repeats):
        out = None
        start = time.perf_counter()
        out = fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return peak_bytes(device) - before, min(seconds), out


def run_child(script: str, args: list[str]):
    """Run ``script args`` in a fresh process that prints one JSON line: (result, None) or (None, error)."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(done.stdout.strip().splitlines()[-1]), None
