"""Time and peak memory of videdit's attention against torch's own SDPA and the dense formula.

Three tables, all measured in this one run:

1. Full cross-frame attention, one SD-1.5-like self-attention layer (8 heads of 40 channels), for
   --frames x --tokens (default 8/16/32 frames of 1024 and 4096 tokens): every query of every
   frame attends to the keys of all F frames of its branch, F*N queries against F*N keys.

       project  videdit.attention.frames.frame_attention(mode="full") at its defaults
       sdpa     one scaled_dot_product_attention call over the branch's frames as one sequence
       dense    softmax(Q K^T / sqrt(d)) V written out: the (F*N)^2 logits of every head at once

   q, k and v are made as a processor receives them: a (B*F, N, heads*d) projection split into
   heads, so the frames of a branch are already one (B, heads, F*N, d) sequence in memory.
   "speed vs sdpa" is sdpa's seconds over the project's (goal >= 0.95: no slower than plain SDPA);
   "MiB/frame" shows whether memory grows linearly with the frames.

2. One frame: a whole attention layer (projections included) through the project's
   CrossFrameAttnProcessor with one frame, against diffusers' default AttnProcessor2_0, a guided
   batch of 2; "cost" is the project's seconds over diffusers' (goal <= 1.05).

3. ST-Layout self-attention, one modulated layer at the 16x16 level (8 heads of 80, the
   conditional branch: F*256 queries against F*256 keys): videdit.attention.layout's
   modulated_attention at its default chunk against dense_modulated_attention (the (F*N)^2 mask
   and logits at once); "mem" is project over dense (goal <= 1/8 at 16 frames), and "max |diff|"
   the largest difference of their outputs (goal <= 1e-5 in fp32).

How it is measured. Peak memory: every measured call runs first in a fresh subprocess after its
inputs exist (benchmarks/_peak.py: CUDA max_memory_allocated; CPU the process's peak resident set,
VmHWM, which counts every page touched, so small numbers carry a few MiB of noise). Time: the best
of the calls made; project and sdpa (and the two one-frame processors) alternate in the same
processes, one process starting with each, so load on the machine falls on both alike. On a CPU
the ratios are also given in CPU seconds of the process (time.process_time), which waiting for a
core on a busy machine does not inflate; with --threads 1 they are the steadier measure there. Cells the
machine cannot hold or finish are skipped with the reason printed: dense cells whose logits and
softmax need more than --dense-max-gib, and cells whose one call would take longer than
--max-call-seconds at the rate torch's SDPA reaches here (measured at the start).

    python benchmarks/attention_speed.py                          # the whole default grid
    python benchmarks/attention_speed.py --tokens 1024 --frames 8 16 --no-layout
    python benchmarks/attention_speed.py --max-call-seconds 1000  # also the 4096-token cells on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from _peak import measure, run_child  # benchmarks/_peak.py: shared peak-memory measurement

from videdit.attention.frames import as_sequence, frame_attention

MIB = 2**20
LAYOUT_TOKENS = 16 * 16
LAYOUT_HEADS, LAYOUT_DIM = 8, 80


def projected_qkv(branches, frames, heads, tokens, dim, device, dtype, seed=0):
    """q, k, v (B*F, heads, N, d) as `run_attention_layer` makes them from a projection."""
    g = torch.Generator(device).manual_seed(seed)
    shape = (branches * frames, tokens, heads * dim)
    return [torch.randn(*shape, generator=g, device=device, dtype=dtype)
            .view(branches * frames, tokens, heads, dim).transpose(1, 2) for _ in range(3)]


def project(q, k, v, frames):
    return as_sequence(frame_attention(q, k, v, frames, "full"), frames)


def sdpa(q, k, v, frames):
    return F.scaled_dot_product_attention(*(as_sequence(t, frames) for t in (q, k, v)))


def dense(q, k, v, frames):
    q, k, v = (as_sequence(t, frames) for t in (q, k, v))
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (B, heads, F*N, F*N)
    return logits.softmax(dim=-1) @ v


FULL = {"project": project, "sdpa": sdpa, "dense": dense}


def timed(fn, device):
    """(wall seconds, CPU seconds of this process, result) of one call."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return time.perf_counter() - start, time.process_time() - cpu, out


def check_agree(args, dtype, methods):
    """Warm-up on a small clip (thread pools, kernels), and the methods must agree with the dense formula."""
    small = projected_qkv(args.branches, 2, args.heads, 64, args.dim, args.device, dtype)
    expected = dense(*small, 2)
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    for method in methods:
        if not torch.allclose(FULL[method](*small, 2), expected, atol=tolerance, rtol=tolerance):
            raise SystemExit(f"{method} disagrees with the dense formula")


def child_full(args, dtype):
    """Full cross-frame attention at one (tokens, frames): the first method's first call gives the
    peak; then the methods alternate for the timing. Prints one JSON line."""
    order = args.order.split(",")
    check_agree(args, dtype, order)
    q, k, v = projected_qkv(args.branches, args.frame, args.heads, args.tokens, args.dim, args.device, dtype)
    cpu = time.process_time()
    peak, seconds, out = measure(lambda: FULL[order[0]](q, k, v, args.frame), 1, args.device)
    times, cpus, outs = {order[0]: [seconds]}, {order[0]: [time.process_time() - cpu]}, {order[0]: out}
    del out
    for i in range(len(order) * args.repeats - 1):
        method = order[(i + 1) % len(order)]
        outs.pop(method, None)
        seconds, cpu, outs[method] = timed(lambda: FULL[method](q, k, v, args.frame), args.device)
        times.setdefault(method, []).append(seconds)
        cpus.setdefault(method, []).append(cpu)
    diff = float((outs["project"] - outs["sdpa"]).abs().max()) if len(outs) == 2 else None
    print(json.dumps({"peak": peak, "first": order[0], "seconds": times, "cpu": cpus, "diff": diff}))


def child_frame1(args, dtype):
    """One frame: the project's processor against diffusers' AttnProcessor2_0 on a whole layer."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from videdit.attention.frames import CrossFrameAttnProcessor, FrameAttentionState

    torch.manual_seed(0)
    attn = Attention(query_dim=args.heads * args.dim, heads=args.heads, dim_head=args.dim)
    attn = attn.to(args.device, dtype).eval()
    processors = {"project": CrossFrameAttnProcessor(FrameAttentionState(1)), "diffusers": AttnProcessor2_0()}
    order = args.order.split(",")
    result = {}
    for tokens in args.tokens:
        g = torch.Generator(args.device).manual_seed(1)
        x = torch.randn(2, tokens, args.heads * args.dim, generator=g, device=args.device, dtype=dtype)
        times, cpus, outs = {}, {}, {}
        with torch.no_grad():
            for name in order:  # warm-up
                processors[name](attn, x[:, :64])
            for i in range(len(order) * args.repeats):
                name = order[i % len(order)]
                outs.pop(name, None)
                seconds, cpu, outs[name] = timed(lambda: processors[name](attn, x), args.device)
                times.setdefault(name, []).append(seconds)
                cpus.setdefault(name, []).append(cpu)
        result[tokens] = {"seconds": times, "cpu": cpus, "diff": float((outs["project"] - outs["diffusers"]).abs().max())}
    print(json.dumps(result))


def layout_inputs(frames, device, dtype):
    """The conditional branch of one modulated self-attention call: (heads, F*N, d) as the layout
    processor passes it, region ids of two boxes and a background, sigma over the clip."""
    from videdit.attention.layout import LayoutState

    side = int(LAYOUT_TOKENS**0.5)
    ids = torch.full((frames, side, side), 2)
    ids[:, side // 4:, : side // 2] = 0
    ids[:, side // 4:, side // 2:] = 1
    masks = [(ids == r).numpy() for r in range(3)]
    state = LayoutState(frames, (side, side), masks=masks, factors=(1,), timestep=901.0)
    q_ids, sigma = state.self_layout(side, side, device)
    q, k, v = projected_qkv(1, frames, LAYOUT_HEADS, LAYOUT_TOKENS, LAYOUT_DIM, device, dtype)
    q, k, v = (t.transpose(0, 1).reshape(LAYOUT_HEADS, frames * LAYOUT_TOKENS, LAYOUT_DIM) for t in (q, k, v))
    return q, k, v, q_ids, sigma.to(dtype), state.weight(state.self_strength)


def child_layout(args, dtype):
    from videdit.attention.layout import dense_modulated_attention, modulated_attention, same_region

    def run(impl, frames):
        q, k, v, ids, sigma, weight = layout_inputs(frames, args.device, dtype)
        if impl == "dense":
            return lambda: dense_modulated_attention(q, k, v, same_region(ids, ids), sigma, weight)
        return lambda: modulated_attention(q, k, v, ids, ids, sigma, weight)

    run(args.impl, 2)()  # warm-up
    peak, seconds, out = measure(run(args.impl, args.frame), 1, args.device)
    result = {"peak": peak, "seconds": seconds}
    if args.impl == "project":  # after the measurement: the same output as the dense formula?
        result["diff"] = float((out - run("dense", args.frame)()).abs().max())
    print(json.dumps(result))


def child_flags(args, *extra):
    flags = list(extra)
    for flag in ("heads", "dim", "branches", "repeats", "device", "dtype", "threads"):
        flags += [f"--{flag}", str(getattr(args, flag))]
    return flags


def sdpa_rate(args, dtype):
    """Multiply-adds per second of one SDPA call here (2 x 2 x heads x N^2 x d flops)."""
    q, k, v = projected_qkv(1, 1, args.heads, 4096, args.dim, args.device, dtype)
    F.scaled_dot_product_attention(q[..., :256, :], k, v)
    seconds, _, _ = timed(lambda: F.scaled_dot_product_attention(q, k, v), args.device)
    return 4 * args.heads * 4096**2 * args.dim / seconds


def main_full(args, dtype, rate, itemsize):
    print(f"-- 1. full cross-frame attention: {args.branches} branch(es) x F frames x N tokens, "
          f"{args.heads} heads x {args.dim}")
    header = (f"{'tokens':>6} {'frames':>6} {'keys':>7} | {'project MiB':>11} {'s':>7} {'MiB/frame':>9} | "
              f"{'sdpa MiB':>8} {'s':>7} | {'dense MiB':>9} {'s':>7} | {'speed vs sdpa':>13} {'(cpu s)':>7} {'max |diff|':>10}")
    print(header)
    print("-" * len(header))
    skipped = []
    for tokens in args.tokens:
        for frames in args.frames:
            keys = frames * tokens
            call_s = 4 * args.branches * args.heads * keys**2 * args.dim / rate
            cell = f"{tokens:6d} {frames:6d} {keys:7d}"
            if call_s > args.max_call_seconds:
                skipped.append(f"{tokens} tokens x {frames} frames: about {call_s:.0f} s per call here "
                               f"(> --max-call-seconds {args.max_call_seconds:g})")
                print(f"{cell} | skipped (about {call_s:.0f} s per call)", flush=True)
                continue
            base = ["--child", "full", "--frame", str(frames), "--tokens", str(tokens)]
            runs = {}
            for order in ("project,sdpa", "sdpa,project"):
                runs[order], error = run_child(__file__, child_flags(args, *base, "--order", order))
                if error:
                    print(f"  {order} at {tokens}x{frames} failed: {error}", file=sys.stderr)
            dense_need = 2 * args.branches * args.heads * keys**2 * itemsize
            if dense_need > args.dense_max_gib * 2**30:
                dense_r = None
                skipped.append(f"dense at {tokens} tokens x {frames} frames: its logits and softmax need "
                               f"{dense_need / 2**30:.0f} GiB (> --dense-max-gib {args.dense_max_gib:g})")
            else:
                dense_r, error = run_child(__file__, child_flags(args, *base, "--order", "dense"))
                if error:
                    print(f"  dense at {tokens}x{frames} failed: {error}", file=sys.stderr)
            if not all(runs.values()):
                print(f"{cell} | failed", flush=True)
                continue
            peak = {r["first"]: r["peak"] for r in runs.values()}
            best, cpu = ({m: min(s for r in runs.values() for s in r[key][m]) for m in ("project", "sdpa")}
                         for key in ("seconds", "cpu"))
            diff = max(r["diff"] for r in runs.values())
            dense_cells = (f"{dense_r['peak'] / MIB:9.1f} {dense_r['seconds']['dense'][0]:7.2f}" if dense_r
                           else f"{'skip':>9} {'-':>7}")
            print(f"{cell} | {peak['project'] / MIB:11.1f} {best['project']:7.2f} {peak['project'] / MIB / frames:9.2f} | "
                  f"{peak['sdpa'] / MIB:8.1f} {best['sdpa']:7.2f} | {dense_cells} | "
                  f"{best['sdpa'] / best['project']:13.3f} {cpu['sdpa'] / cpu['project']:7.3f} {diff:10.1e}", flush=True)
    for line in skipped:
        print(f"   skipped: {line}")


def main_frame1(args):
    print(f"-- 2. one frame, a whole attention layer ({args.heads * args.dim} channels, {args.heads} heads), "
          "batch 2: the project's processor vs diffusers' AttnProcessor2_0")
    print(f"{'tokens':>6} | {'project s':>9} {'diffusers s':>11} | {'cost':>6} {'(cpu s)':>7} {'max |diff|':>10}")
    runs = []
    for order in ("project,diffusers", "diffusers,project"):
        flags = child_flags(args, "--child", "frame1", "--order", order, "--tokens", *map(str, args.tokens))
        flags[flags.index("--repeats") + 1] = str(args.frame1_repeats)
        result, error = run_child(__file__, flags)
        if error:
            print(f"  one-frame run failed: {error}", file=sys.stderr)
            return
        runs.append(result)
    for tokens in args.tokens:
        cells = [r[str(tokens)] for r in runs]
        best, cpu = ({m: min(s for c in cells for s in c[key][m]) for m in ("project", "diffusers")}
                     for key in ("seconds", "cpu"))
        print(f"{tokens:6d} | {best['project']:9.4f} {best['diffusers']:11.4f} | "
              f"{best['project'] / best['diffusers']:5.3f}x {cpu['project'] / cpu['diffusers']:6.3f}x "
              f"{max(c['diff'] for c in cells):10.1e}", flush=True)


def main_layout(args):
    print(f"-- 3. ST-Layout self-attention, one modulated layer at 16x16 ({LAYOUT_HEADS} heads x {LAYOUT_DIM}), "
          "the conditional branch: project (bias per query chunk) vs dense")
    print(f"{'frames':>6} {'keys':>6} | {'dense MiB':>9} {'s':>6} | {'project MiB':>11} {'s':>6} | "
          f"{'mem':>6} {'time':>6} {'max |diff|':>10}")
    for frames in args.layout_frames:
        results = {}
        for impl in ("dense", "project"):
            flags = child_flags(args, "--child", "layout", "--impl", impl, "--frame", str(frames))
            results[impl], error = run_child(__file__, flags)
            if error:
                print(f"  layout {impl} at {frames} frames failed: {error}", file=sys.stderr)
        d, p = results["dense"], results["project"]
        if not (d and p):
            continue
        print(f"{frames:6d} {frames * LAYOUT_TOKENS:6d} | {d['peak'] / MIB:9.0f} {d['seconds']:6.2f} | "
              f"{p['peak'] / MIB:11.0f} {p['seconds']:6.2f} | {p['peak'] / d['peak']:6.3f} "
              f"{p['seconds'] / d['seconds']:6.3f} {p['diff']:10.1e}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096], help="tokens per frame")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--dim", type=int, default=40, help="channels per head")
    parser.add_argument("--branches", type=int, default=1, help="2 for classifier-free guidance")
    parser.add_argument("--repeats", type=int, default=1, help="alternations per process (two processes per cell)")
    parser.add_argument("--frame1-repeats", type=int, default=5, help="alternations per process, one-frame table")
    parser.add_argument("--layout-frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--no-full", action="store_true", help="skip table 1")
    parser.add_argument("--no-frame1", action="store_true", help="skip table 2")
    parser.add_argument("--no-layout", action="store_true", help="skip table 3")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--dense-max-gib", type=float, default=8.0, help="skip dense cells needing more")
    parser.add_argument("--max-call-seconds", type=float, default=120.0,
                        help="skip cells whose one call would take longer here")
    parser.add_argument("--child", choices=("full", "frame1", "layout"), help=argparse.SUPPRESS)
    parser.add_argument("--order", help=argparse.SUPPRESS)
    parser.add_argument("--impl", choices=("dense", "project"), help=argparse.SUPPRESS)
    parser.add_argument("--frame", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.child:
        if args.child == "full":
            args.tokens = args.tokens[0]
        return {"full": child_full, "frame1": child_frame1, "layout": child_layout}[args.child](args, dtype)

    rate = sdpa_rate(args, dtype)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"attention on {args.device}, {args.dtype}, {args.threads} threads; SDPA reaches "
          f"{rate / 1e9:.0f} GFLOP/s here; load average {load:.1f} at start")
    if not args.no_full:
        main_full(args, dtype, rate, torch.empty((), dtype=dtype).element_size())
    if not args.no_frame1:
        main_frame1(args)
    if not args.no_layout:
        main_layout(args)
    print("MiB: peak memory a call added over its inputs. Goals: speed vs sdpa >= 0.95 at 32 frames, "
          "one-frame cost <= 1.05x, layout mem <= 0.125 at 16 frames with max |diff| <= 1e-5.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
