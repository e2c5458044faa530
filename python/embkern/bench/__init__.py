"""embkern's microbenchmark suite: ``python -m embkern.bench``.

Runs every kernel family on a built-in workload against numpy and every installed peer (faiss,
NumKong/SimSIMD, USearch, ...), side by side in one process at each thread count, checks that the
results agree, prints one table (time, throughput, ratio to the best peer) and writes JSON,
Markdown and, where matplotlib is installed, a PNG chart of the ratios to ``--output``.

A family is one module ``embkern/bench/<family>.py`` with a ``CASES`` list (see ``_harness.Case``);
it is found automatically. The exit status is 1 when an embkern result disagreed with its
reference or an embkern call failed, else 0.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from typing import List, Optional, Sequence

from . import _harness
from ._harness import Case, Progress, Row, family_names, load_family, text_table

__all__ = ["main", "run", "Case", "Row"]


def _split(values: Optional[Sequence[str]]) -> List[str]:
    out: List[str] = []
    for v in values or ():
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _threads(text: str) -> List[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads wants integers like 1,2; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--threads wants positive integers like 1,2; got {text!r}")
    return list(dict.fromkeys(values))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m embkern.bench",
        description="Benchmark embkern's kernels against numpy and installed peers (faiss, ...).",
        epilog="Exit status 1 when an embkern result disagrees with its reference or an embkern call fails.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes (well under a minute)")
    size.add_argument("--full", action="store_true", help="the acceptance sizes (large; many minutes)")
    p.add_argument("--family", action="append", metavar="NAME",
                   help=f"family to run (repeatable or comma list; default all: {', '.join(family_names())})")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="only cases whose name contains TEXT (repeatable or comma list)")
    p.add_argument("--threads", type=_threads, default=[1, 2], metavar="N[,M]",
                   help="thread counts for embkern and every peer (default 1,2)")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="embkern backends to time: cpu, numba (repeatable or comma list; default both)")
    p.add_argument("--repeat", type=_positive, default=5, metavar="N",
                   help="timed samples per measurement, after one warm-up; the median is reported (default 5)")
    p.add_argument("--output", default="bench_results", metavar="DIR",
                   help="folder for results.json, results.md, ratios.png (default ./bench_results)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random workloads (default 0)")
    p.add_argument("--list", action="store_true", help="list the cases and their sizes, run nothing")
    return p


def select_cases(families: Sequence[str], filters: Sequence[str]) -> List[Case]:
    cases: List[Case] = []
    for name in families:
        cases += load_family(name)
    if filters:
        cases = [c for c in cases if any(f in c.name or f in c.key for f in filters)]
    return cases


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    profile = "quick" if args.quick else "full" if args.full else "default"
    known = family_names()
    families = _split(args.family) or known
    unknown = [f for f in families if f not in known]
    if unknown:
        print(f"unknown family {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    backends = _split(args.backend) or ["cpu", "numba"]
    bad = [b for b in backends if b not in ("cpu", "numba")]
    if bad:
        print(f"unknown backend {', '.join(bad)}; choose from cpu, numba", file=sys.stderr)
        return 2
    backends = list(dict.fromkeys(backends))
    cases = select_cases(families, _split(args.case))
    if not cases:
        print("no benchmark case matches the selection", file=sys.stderr)
        return 2

    if args.list:
        for c in cases:
            print(f"{c.key:<28} {c.title}")
            for prof in ("quick", "default", "full"):
                print(f"    {prof:<8} {c.describe(prof)}")
        return 0

    from . import _report  # noqa: E402  (matplotlib etc. only when running)

    cfg = _harness.embkern.show_config(print_out=False)
    ncpu = os.cpu_count() or 1
    err = sys.stderr
    print(f"embkern.bench: profile {profile}, {len(cases)} case(s) x threads {args.threads}, "
          f"backends {backends}, repeat {args.repeat}; ISA {cfg.get('isa')}, {ncpu} CPUs", file=err, flush=True)
    if max(args.threads) > ncpu:
        print(f"warning: {max(args.threads)} threads on {ncpu} CPUs: the larger counts are oversubscribed",
              file=err, flush=True)

    start = time.perf_counter()
    progress = Progress(len(cases) * len(args.threads))
    rows = _harness.run(cases, profile, args.threads, backends, args.repeat, seed=args.seed, progress=progress)
    elapsed = time.perf_counter() - start

    print(text_table(rows))
    meta = {
        "command": "python -m embkern.bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "profile": profile,
        "families": families,
        "threads": args.threads,
        "backends": backends,
        "repeat": args.repeat,
        "seed": args.seed,
        "elapsed_s": elapsed,
        "environment": _report.environment(),
    }
    os.makedirs(args.output, exist_ok=True)
    paths = [os.path.join(args.output, "results.json"), os.path.join(args.output, "results.md")]
    _report.write_json(paths[0], rows, meta)
    with open(paths[1], "w", encoding="utf-8") as fh:
        fh.write(_report.markdown(rows, meta))
    png = os.path.join(args.output, "ratios.png")
    why = _report.write_png(png, rows, args.threads)
    if why is None:
        paths.append(png)
    else:
        print(f"no chart: {why}", file=err)
    print(f"wrote {', '.join(paths)} in {_harness.format_duration(elapsed)}", file=err, flush=True)

    failures = [r for r in rows if r.kind == "embkern" and (r.mismatch or r.status == "error")]
    mismatched = [r for r in rows if r.mismatch]
    if mismatched:
        print(f"\n!!! {len(mismatched)} result(s) DISAGREE with their reference: "
              + "; ".join(f"{r.family}.{r.case} t={r.threads} {r.impl}" for r in mismatched))
    errors = [r for r in rows if r.status == "error"]
    if errors:
        print(f"!!! {len(errors)} call(s) failed: "
              + "; ".join(f"{r.family}.{r.case} t={r.threads} {r.impl}: {r.message}" for r in errors), file=err)
    return 1 if failures else 0


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Alias of :func:`main`, for ``embkern.bench.run(["--quick"])``."""
    return main(argv)
