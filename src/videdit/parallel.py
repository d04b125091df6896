"""Editing across processes with torch.distributed: ``torchrun --nproc-per-node N -m videdit edit ...``.

Launchers (torchrun, ``accelerate launch``) start N copies of the command and tell each its place
through the environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Each copy joins
one process group (nccl between GPUs, gloo on CPUs), takes a contiguous share of the frames, and
rank 0 gathers the edited frames and writes the output; the other ranks write nothing.

Across machines, torchrun's rendezvous does the same:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m videdit edit clip.mp4 --method anchor --model ip2p --prompt "make it a watercolour" -o out.mp4

run on both machines (the same command, the same input path on each; the output is written on the
machine of rank 0).
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Dist", "broadcast_tensors", "current", "detect", "gather_to_main", "init_distributed", "is_main", "share"]


@dataclass(frozen=True)
class Dist:
    """This process's place in a parallel run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str


def detect() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from a launcher's environment; None for a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    return (rank, world, local) if world > 1 else None


def init_distributed(device: str | None = None) -> Dist | None:
    """Join the launcher's process group (once per process); None outside a parallel launch.

    On CUDA every rank takes the GPU of its local rank (``cuda:LOCAL_RANK``) and the backend is
    nccl; elsewhere gloo. ``device`` is the user's --device (None: CUDA if available, else CPU).
    """
    import torch.distributed as dist

    found = detect()
    if found is None:
        return None
    rank, world, local = found
    use_cuda = torch.cuda.is_available() and (device is None or device in ("auto", "cuda") or device.startswith("cuda"))
    if use_cuda:
        dev = device if device and device.startswith("cuda:") else f"cuda:{local % torch.cuda.device_count()}"
        torch.cuda.set_device(torch.device(dev))
        backend = "nccl"
    else:
        dev, backend = (device if device and device != "auto" else "cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
        atexit.register(_finish)
    return Dist(rank, world, local, backend, dev)


def _finish() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> Dist | None:
    """The parallel run this process belongs to, if the process group is up with more than one rank."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    backend = dist.get_backend()
    dev = f"cuda:{torch.cuda.current_device()}" if backend == "nccl" else "cpu"
    rank = dist.get_rank()
    return Dist(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)), backend, dev)


def is_main() -> bool:
    """True on rank 0 of a parallel run, and in a single process."""
    d = current()
    return d is None or d.rank == 0


def share(items: list, rank: int, world_size: int) -> list:
    """Rank ``rank``'s contiguous share of ``items``; shares differ in length by at most one."""
    n = len(items)
    lo = rank * n // world_size
    hi = (rank + 1) * n // world_size
    return list(items[lo:hi])


def broadcast_tensors(tensors: dict[Any, torch.Tensor] | None, device, src: int = 0) -> dict[Any, torch.Tensor]:
    """``tensors`` of rank ``src`` on every rank: the keys, shapes and dtypes first (one small
    pickled message), then all values in one flat buffer per dtype (one broadcast each)."""
    import torch.distributed as dist

    rank = dist.get_rank()
    meta = [None]
    if rank == src:
        meta = [[(key, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in tensors.items()]]
    dist.broadcast_object_list(meta, src=src, device=torch.device(device) if dist.get_backend() == "nccl" else None)
    out: dict[Any, torch.Tensor] = {}
    for dtype_name in sorted({m[2] for m in meta[0]}):
        dtype = getattr(torch, dtype_name)
        entries = [m for m in meta[0] if m[2] == dtype_name]
        if rank == src:
            flat = torch.cat([tensors[key].reshape(-1).to(device) for key, _, _ in entries])
        else:
            total = sum(int(torch.Size(shape).numel()) for _, shape, _ in entries)
            flat = torch.empty(total, dtype=dtype, device=device)
        dist.broadcast(flat, src=src)
        offset = 0
        for key, shape, _ in entries:
            n = int(torch.Size(shape).numel())
            out[key] = flat[offset:offset + n].view(shape)
            offset += n
    return out


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (in rank order), None on the others."""
    import torch.distributed as dist

    d = current()
    if d is None:
        return [obj]
    got = [None] * d.world_size if d.rank == 0 else None
    dist.gather_object(obj, got, dst=0)
    return got
