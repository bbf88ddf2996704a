#!/usr/bin/env python3
"""posembed against PyTorch eager, measured side by side: each round runs,
for every scheme in turn, `posembed bench` and `pytorch_reference.py` back
to back (which one goes first alternates between rounds and between
schemes), then the medians are printed as a Markdown table. Each round is a pair measured within seconds of each
other, so the table also gives the median and range of the per-round
ratios: on a shared VM whose speed drifts over minutes, those are steadier
than the ratio of the medians, and the schemes see the same drift because
their rounds interleave. The last column is the rate each side's sgemm
reached on one 2048 x 256 by 256 x 256 product at the end of its runs
(medians): whether the two matrix-product libraries were on par.

    cargo build --release
    python3 tests/bench/side_by_side.py --model s1 --model s2 --rounds 5
    python3 tests/bench/side_by_side.py --model s1 --jobs 2 --scheme none

With `--jobs N`, posembed trains N copies side by side (one thread each) and
PyTorch runs N single-thread processes; both report the summed tokens/s.
`--torch-threads N` gives a single PyTorch process N threads (its default
is one per core) while posembed keeps its one: the baseline on machines
where PyTorch's threading pays off.
`--posembed PATH` measures another build (e.g. an older commit's binary).

With `--concurrent` (one run each, two cores needed) the two sides run at
the same time instead of one after the other, each pinned to its own core,
and swap cores every round: both see the same machine state (on a shared VM
whose clock depends on what the other core does, this narrows the per-round
ratios several-fold). PyTorch starts first, and posembed once PyTorch has
had the time it takes to import torch, so that the timed training phases
overlap; give both enough steps to train for several seconds (e.g.
`--steps 80` for S1, which S2 divides by 4 as usual).
"""

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
POSEMBED = HERE.parent.parent / "target" / "release" / "posembed"


def posembed_command(binary, model, scheme, steps, jobs):
    return [binary, "bench", "--model", model, "--scheme", scheme, "--steps", str(steps),
            "--repeat", "1", "--jobs", str(jobs), "--json"]


def posembed_result(out):
    r = json.loads(out.strip().splitlines()[-1])
    # Builds older than the reference product (e.g. the plain-dfdx "before") lack it.
    return r["train_tokens_per_s"], r["eval_tokens_per_s"], r.get("reference_gflops", math.nan)


def pytorch_command(model, scheme, steps, jobs, threads=1):
    return [sys.executable, str(HERE / "pytorch_reference.py"), "--model", model, "--scheme", scheme,
            "--steps", str(steps), "--procs", str(jobs), "--threads", str(threads), "--json"]


def pytorch_result(out):
    rows = [json.loads(line) for line in out.strip().splitlines()]
    return (sum(r["train_tokens_per_s"] for r in rows), sum(r["eval_tokens_per_s"] for r in rows),
            statistics.mean(r["reference_gflops"] for r in rows))


def launch(command, core=None):
    """Starts `command`, pinned to one core when `core` is given."""
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=pin)


def finish(process, parse):
    out, _ = process.communicate()
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, process.args, out)
    return parse(out)


def one_after_the_other(args, model, scheme, steps, posembed_first):
    """(posembed, PyTorch) results, run back to back."""
    def ours():
        return finish(launch(posembed_command(args.posembed, model, scheme, steps, args.jobs)),
                      posembed_result)

    def theirs():
        command = pytorch_command(model, scheme, steps, args.jobs, args.torch_threads)
        return finish(launch(command), pytorch_result)

    if posembed_first:
        first = ours()
        return first, theirs()
    first = theirs()
    return ours(), first


def at_the_same_time(args, model, scheme, steps, posembed_core, delay):
    """(posembed, PyTorch) results, run concurrently on two cores; posembed starts
    `delay` seconds after PyTorch (its import time), so their training overlaps."""
    theirs = launch(pytorch_command(model, scheme, steps, 1), 1 - posembed_core)
    try:
        time.sleep(delay)
        ours = launch(posembed_command(args.posembed, model, scheme, steps, 1), posembed_core)
        return finish(ours, posembed_result), finish(theirs, pytorch_result)
    finally:
        theirs.kill()  # a no-op once it has finished; else it must not outlive a failure


def import_seconds():
    """Median wall time of `import torch` in a fresh interpreter."""
    times = []
    for _ in range(3):
        clock = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - clock)
    return statistics.median(times)


def rate(gflops):
    return "–" if math.isnan(gflops) else f"{gflops:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=["s1", "s2"])
    parser.add_argument("--scheme", action="append", choices=["none", "sinusoidal", "alibi", "rope"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="threads of the one PyTorch process (see above)")
    parser.add_argument("--posembed", default=str(POSEMBED), help="the posembed binary")
    parser.add_argument("--concurrent", action="store_true",
                        help="run the two sides at the same time, one core each (see above)")
    args = parser.parse_args()
    for name in ("rounds", "steps", "jobs", "torch_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.torch_threads > 1 and (args.concurrent or args.jobs > 1):
        parser.error("--torch-threads is for one PyTorch process running alone: drop --concurrent and --jobs")
    if not pathlib.Path(args.posembed).is_file():
        parser.error(f"no posembed binary at {args.posembed}: run `cargo build --release` or pass --posembed PATH")
    if args.concurrent and args.jobs != 1:
        parser.error("--concurrent runs one posembed run against one PyTorch process: drop --jobs")
    if args.concurrent and not {0, 1} <= os.sched_getaffinity(0):
        parser.error("--concurrent needs cores 0 and 1")
    delay = import_seconds() if args.concurrent else 0.0
    print("| model | scheme | jobs | posembed train tok/s | PyTorch train tok/s | ratio of medians "
          "| median (range) of round ratios | posembed eval tok/s | PyTorch eval tok/s "
          "| sgemm GFLOP/s: gemm, PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    jobs = "1, concurrently" if args.concurrent else args.jobs
    if args.torch_threads > 1:
        jobs = f"1 (PyTorch: {args.torch_threads} threads)"
    schemes = args.scheme or ["none", "sinusoidal", "alibi", "rope"]
    for model in args.model or ["s1", "s2"]:
        steps = args.steps if model == "s1" else max(args.steps // 4, 3)
        ours = {scheme: [] for scheme in schemes}
        theirs = {scheme: [] for scheme in schemes}
        for turn in range(args.rounds):
            for i, scheme in enumerate(schemes):
                # Who goes first (or, concurrently, who gets core 0) alternates.
                if args.concurrent:
                    pair = at_the_same_time(args, model, scheme, steps, (turn + i) % 2, delay)
                else:
                    pair = one_after_the_other(args, model, scheme, steps, (turn + i) % 2 == 0)
                ours[scheme].append(pair[0])
                theirs[scheme].append(pair[1])
        for scheme in schemes:
            a, b = ours[scheme], theirs[scheme]
            train = [statistics.median(r[0] for r in rs) for rs in (a, b)]
            evaluation = [statistics.median(r[1] for r in rs) for rs in (a, b)]
            sgemm = [statistics.median(r[2] for r in rs) for rs in (a, b)]
            ratios = [x[0] / y[0] for x, y in zip(a, b)]
            print(f"| {model} | {scheme} | {jobs} | {train[0]:.0f} | {train[1]:.0f} | "
                  f"{train[0] / train[1]:.2f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}–{max(ratios):.2f}) | {evaluation[0]:.0f} | {evaluation[1]:.0f} | "
                  f"{rate(sgemm[0])}, {rate(sgemm[1])} |",
                  flush=True)


if __name__ == "__main__":
    main()
