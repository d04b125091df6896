"""Peak memory and time of chunked vs dense full cross-frame attention, one self-attention layer.

One SD-1.5-like self-attention layer (8 heads of 40 channels) in "full" cross-frame mode: every
query of every frame attends to the keys of all F frames of its branch, so F*N queries meet
F*N keys. Three ways to compute the same thing:

    dense    softmax(Q K^T / sqrt(d)) V written out: the (F*N)^2 logits of every head at once,
             as cross-frame processors that spell out the attention formula hold them.
    sdpa     one scaled_dot_product_attention call over all F*N queries: its memory depends on
             the kernel torch picks (fused kernels stream the keys; the math kernel builds the logits).
    chunked  videdit.attention.frames.frame_attention at its defaults: one SDPA call where torch
             picks a fused kernel, query chunks where it would pick the math kernel.

How memory is measured. Every (method, frames) pair runs in a fresh subprocess, after its inputs
exist, so one run's allocator state does not leak into the next.
  CUDA: torch.cuda.max_memory_allocated() during the call minus memory allocated before it.
  CPU: torch's CPU allocations go through its own allocator, which tracemalloc does not see, so
       the process's peak resident set is read instead: VmHWM of /proc/self/status, reset by
       writing 5 to /proc/self/clear_refs just before the call, minus VmRSS at that moment. It
       counts every page the call touches (result, copies, temporaries, thread-pool stacks), not
       only tensors, so small numbers carry some MiB of noise. Linux only.
Times are the best of --repeats calls after a small warm-up (which also checks that the three
methods agree). All columns come from the same run, so the ratios compare like with like.
Other load on the machine inflates times, not memory, and it hurts many short multi-threaded
calls (chunked) more than one long call; the header prints the load average, and --threads 1
makes the time ratio steadier on a busy machine.

Dense runs whose logits and softmax would exceed --dense-max-gib are skipped, not attempted.

    python benchmarks/frame_attention_memory.py                       # 32x32 tokens, 8/16/32 frames
    python benchmarks/frame_attention_memory.py --tokens 4096 --frames 8 16 --branches 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from _peak import measure, run_child  # benchmarks/_peak.py: shared peak-memory measurement
import torch.nn.functional as F

from videdit.attention.frames import frame_attention

METHODS = ("dense", "sdpa", "chunked")
MIB = 2**20


def flat_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*F, heads, N, d) -> (B, heads, F*N, d): all frames of a branch as one sequence."""
    b, heads, n, d = x.shape[0] // frames, *x.shape[1:]
    return x.view(b, frames, heads, n, d).transpose(1, 2).reshape(b, heads, frames * n, d)


def dense(q, k, v, frames):
    q, k, v = (flat_frames(t, frames) for t in (q, k, v))
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (B, heads, F*N, F*N)
    return logits.softmax(dim=-1) @ v


def sdpa(q, k, v, frames):
    q, k, v = (flat_frames(t, frames) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v)


def chunked(q, k, v, frames):
    return frame_attention(q, k, v, frames, mode="full")  # (B*F, heads, N, d): no reshaping needed


def dense_bytes(branches, heads, frames, tokens, itemsize):
    """Logits and their softmax, both (B, heads, F*N, F*N): what the dense method holds at its peak."""
    return 2 * branches * heads * (frames * tokens) ** 2 * itemsize


def inputs(branches, frames, heads, tokens, dim, device, dtype, seed=0):
    g = torch.Generator(device).manual_seed(seed)
    return [torch.randn(branches * frames, heads, tokens, dim, generator=g, device=device, dtype=dtype) for _ in range(3)]


def child(args):
    """One (method, frames) measurement; prints one JSON line."""
    dtype = getattr(torch, args.dtype)
    fn = {"dense": dense, "sdpa": sdpa, "chunked": chunked}[args.method]
    # warm-up on a small clip: thread pools and kernels start here, and the methods must agree
    small = inputs(args.branches, 2, args.heads, 64, args.dim, args.device, dtype)
    expected = dense(*small, 2)
    got = fn(*small, 2)
    got = flat_frames(got, 2) if args.method == "chunked" else got
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    if not torch.allclose(got, expected, atol=tolerance, rtol=tolerance):
        raise SystemExit(f"{args.method} disagrees with the dense formula")
    q, k, v = inputs(args.branches, args.frame, args.heads, args.tokens, args.dim, args.device, dtype)
    peak, seconds, _ = measure(lambda: fn(q, k, v, args.frame), args.repeats, args.device)
    print(json.dumps({"peak": peak, "seconds": seconds}))


def child_result(args, method, frames):
    flags = ["--child", method, "--frame", str(frames)]
    for flag in ("tokens", "heads", "dim", "branches", "repeats", "device", "dtype", "threads"):
        flags += [f"--{flag}", str(getattr(args, flag))]
    return run_child(__file__, flags)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32 * 32, help="tokens per frame (default 1024: 32x32)")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=40, help="channels per head")
    parser.add_argument("--branches", type=int, default=1, help="2 for classifier-free guidance")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--dense-max-gib", type=float, default=8.0, help="skip dense runs needing more")
    parser.add_argument("--child", choices=METHODS, dest="method", help=argparse.SUPPRESS)
    parser.add_argument("--frame", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.method:
        return child(args)

    itemsize = torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    print(
        f"full cross-frame attention, {args.branches} branch(es) x F frames x {args.tokens} tokens, "
        f"{args.heads} heads x {args.dim}, {args.dtype} on {args.device}; "
        f"{args.threads} threads, best of {args.repeats}; load average {os.getloadavg()[0]:.1f} at start"
    )
    header = (
        "frames  keys/query  dense logits MiB |  dense MiB  dense s |  sdpa MiB  sdpa s | chunked MiB  chunked s"
        " | dense/chunked mem  time | sdpa/chunked mem  time"
    )
    print(header)
    print("-" * len(header))
    for frames in args.frames:
        need = dense_bytes(args.branches, args.heads, frames, args.tokens, itemsize)
        results = {}
        for method in METHODS:
            if method == "dense" and need > args.dense_max_gib * 2**30:
                results[method] = None
                continue
            results[method], error = child_result(args, method, frames)
            if error:
                print(f"  {method} at {frames} frames failed: {error}", file=sys.stderr)

        def cells(r, width):
            return (f"{r['peak'] / MIB:{width}.1f}", f"{r['seconds']:7.2f}") if r else (f"{'skip':>{width}}", f"{'-':>7}")

        def ratio(a, b):
            if not (a and b):
                return f"{'-':>7} {'-':>5}"
            return f"{a['peak'] / max(b['peak'], MIB):6.1f}x {a['seconds'] / b['seconds']:4.2f}x"

        (dm, ds), (sm, ss), (cm, cs) = cells(results["dense"], 10), cells(results["sdpa"], 9), cells(results["chunked"], 11)
        print(
            f"{frames:6d}  {frames * args.tokens:10d}  {need / 2 / MIB:16.0f} | {dm}  {ds} | {sm} {ss} | {cm}  {cs}"
            f"    |        {ratio(results['dense'], results['chunked'])} |       {ratio(results['sdpa'], results['chunked'])}"
        )
    print(
        "MiB: peak memory the call added over its inputs; ratios: memory (chunked floored at 1 MiB) and time."
    )


if __name__ == "__main__":
    main()
