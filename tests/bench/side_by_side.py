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
`--posembed PATH` measures another build (e.g. an older commit's binary).
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
POSEMBED = HERE.parent.parent / "target" / "release" / "posembed"


def posembed(binary, model, scheme, steps, jobs):
    out = subprocess.run(
        [binary, "bench", "--model", model, "--scheme", scheme, "--steps", str(steps),
         "--repeat", "1", "--jobs", str(jobs), "--json"],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["train_tokens_per_s"], r["eval_tokens_per_s"], r["reference_gflops"]


def pytorch(_binary, model, scheme, steps, jobs):
    out = subprocess.run(
        [sys.executable, HERE / "pytorch_reference.py", "--model", model, "--scheme", scheme,
         "--steps", str(steps), "--procs", str(jobs), "--json"],
        check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.strip().splitlines()]
    return (sum(r["train_tokens_per_s"] for r in rows), sum(r["eval_tokens_per_s"] for r in rows),
            statistics.mean(r["reference_gflops"] for r in rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=["s1", "s2"])
    parser.add_argument("--scheme", action="append", choices=["none", "sinusoidal", "alibi", "rope"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--posembed", default=str(POSEMBED), help="the posembed binary")
    args = parser.parse_args()
    for name in ("rounds", "steps", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not pathlib.Path(args.posembed).is_file():
        parser.error(f"no posembed binary at {args.posembed}: run `cargo build --release` or pass --posembed PATH")
    print("| model | scheme | jobs | posembed train tok/s | PyTorch train tok/s | ratio of medians "
          "| median (range) of round ratios | posembed eval tok/s | PyTorch eval tok/s "
          "| sgemm GFLOP/s: gemm, PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    schemes = args.scheme or ["none", "sinusoidal", "alibi", "rope"]
    for model in args.model or ["s1", "s2"]:
        steps = args.steps if model == "s1" else max(args.steps // 4, 3)
        ours = {scheme: [] for scheme in schemes}
        theirs = {scheme: [] for scheme in schemes}
        for turn in range(args.rounds):
            for i, scheme in enumerate(schemes):
                pair = [(ours[scheme], posembed), (theirs[scheme], pytorch)]
                for results, run in pair if (turn + i) % 2 == 0 else pair[::-1]:
                    results.append(run(args.posembed, model, scheme, steps, args.jobs))
        for scheme in schemes:
            a, b = ours[scheme], theirs[scheme]
            train = [statistics.median(r[0] for r in rs) for rs in (a, b)]
            evaluation = [statistics.median(r[1] for r in rs) for rs in (a, b)]
            sgemm = [statistics.median(r[2] for r in rs) for rs in (a, b)]
            ratios = [x[0] / y[0] for x, y in zip(a, b)]
            print(f"| {model} | {scheme} | {args.jobs} | {train[0]:.0f} | {train[1]:.0f} | "
                  f"{train[0] / train[1]:.2f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}–{max(ratios):.2f}) | {evaluation[0]:.0f} | {evaluation[1]:.0f} | "
                  f"{sgemm[0]:.0f}, {sgemm[1]:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
