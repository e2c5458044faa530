"""Scaling out with Dask: encode and search a dataset several times larger than one worker's memory.

    python bench/dask_scaling.py                       # 2 workers x 1 thread, 400 MB each, ~2 GB data
    python bench/dask_scaling.py --rows 4000000 --memory-limit 512MB --output bench_results

A LocalCluster of worker processes, each capped at --memory-limit, generates float32 vectors
block by block (the whole set never sits in one worker) and runs embkern.dask's encoders
(pack_signs, pq_encode) and exact sharded searches (hamming_topk, pq_search) on them. The same
calls then run in this process on the whole array in memory, the results are compared (they must
be identical) and both throughputs are printed with their ratio. Timings are medians of --repeat
runs; the Dask encoder times include generating each block on its worker, the in-memory ones do
not (the data is already there), so the ratio understates Dask's encoding throughput.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def _median_time(fn, repeat):
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--block-rows", type=int, default=20_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="400MB")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--output", default="bench_results")
    args = p.parse_args(argv)

    import dask
    import dask.array as da
    import distributed
    from dask.utils import parse_bytes

    import embkern
    import embkern.dask as ekd
    from embkern.pq import ProductQuantizer

    data_bytes = args.rows * args.dim * 4
    limit = parse_bytes(args.memory_limit)
    print(f"data {data_bytes / 2**30:.2f} GiB float32 ({args.rows:,} x {args.dim}), "
          f"{args.workers} workers x {args.memory_limit} ({data_bytes / limit:.1f}x one worker's limit)",
          file=sys.stderr, flush=True)

    def vectors():
        rng = da.random.default_rng(0)
        return rng.standard_normal((args.rows, args.dim), chunks=(args.block_rows, args.dim), dtype=np.float32)

    rows = []
    with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                  memory_limit=args.memory_limit, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        x = vectors()
        sample = x[:20_000].compute()
        pq = ProductQuantizer(args.dim, 32, 8).fit(sample, iterations=10)
        queries = sample[: args.queries]
        qcodes = embkern.pack_signs(queries)

        # ---- on the cluster ------------------------------------------------------------------
        def timed_encode(make):
            """Median time of computing make() on the cluster; each run's result is released
            before the next (so nothing is reused), then a last run is kept for the searches."""
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                out = client.persist(make())
                distributed.wait(out)
                times.append(time.perf_counter() - t)
                client.cancel(out)
                del out
                time.sleep(0.5)
            kept = client.persist(make())
            distributed.wait(kept)
            return kept, statistics.median(times)

        _, t_gen_d = timed_encode(lambda: vectors().sum(axis=1))  # generation alone, as a baseline
        codes_d, t_pack_d = timed_encode(lambda: ekd.pack_signs(vectors()))
        pqc_d, t_pq_d = timed_encode(lambda: ekd.pq_encode(pq, vectors()))
        (hd_d, hi_d), t_ham_d = _median_time(lambda: ekd.hamming_topk(qcodes, codes_d, args.k), args.repeat)
        (pd_d, pi_d), t_pqs_d = _median_time(lambda: ekd.pq_search(pq, queries, pqc_d, args.k), args.repeat)
        info = client.scheduler_info()["workers"]
        worker_mem = max(w.get("metrics", {}).get("memory", 0) for w in info.values())

        # ---- in this process, the whole array in memory -----------------------------------------
        t0 = time.perf_counter()
        xs = x.compute(scheduler="threads")
        t_gen = time.perf_counter() - t0
        codes_s, t_pack_s = _median_time(lambda: embkern.pack_signs(xs), args.repeat)
        pqc_s, t_pq_s = _median_time(lambda: pq.encode(xs), args.repeat)
        (hd_s, hi_s), t_ham_s = _median_time(lambda: embkern.hamming_topk(qcodes, codes_s, args.k), args.repeat)
        (pd_s, pi_s), t_pqs_s = _median_time(lambda: pq.search(queries, pqc_s, args.k), args.repeat)
        del xs

        same = {
            "pack_signs": bool(np.array_equal(codes_d.compute(), codes_s)),
            "pq_encode": bool(np.array_equal(pqc_d.compute(), pqc_s)),
            "hamming_topk": bool(np.array_equal(hd_d, hd_s) and np.array_equal(hi_d, hi_s)),
            "pq_search": bool(np.array_equal(pd_d, pd_s) and np.array_equal(pi_d, pi_s)),
        }
        for name, td, ts, items, unit in [
            ("pack_signs", t_pack_d, t_pack_s, args.rows, "vec"),
            ("pq_encode", t_pq_d, t_pq_s, args.rows, "vec"),
            ("hamming_topk", t_ham_d, t_ham_s, args.queries, "queries"),
            ("pq_search", t_pqs_d, t_pqs_s, args.queries, "queries"),
        ]:
            rows.append({"kernel": name, "dask_s": td, "single_s": ts, "items": items, "unit": unit,
                         "dask_per_s": items / td, "single_per_s": items / ts, "ratio": ts / td,
                         "identical": same[name]})

    print(f"\n{'kernel':<14} {'dask':>12} {'in-memory':>12} {'dask/in-memory':>15}  identical")
    for r in rows:
        print(f"{r['kernel']:<14} {r['dask_per_s']:>9,.0f}/s {r['single_per_s']:>9,.0f}/s "
              f"{r['ratio']:>14.2f}x  {r['identical']}")
    print(f"(generating the vectors alone takes {t_gen_d:.1f} s on the cluster, included in its encode "
          f"times; in memory it took {t_gen:.1f} s, not counted; largest worker memory seen "
          f"{worker_mem / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB)")
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "dask_scaling.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"args": vars(args), "data_bytes": data_bytes, "rows": rows,
                   "generation_s": t_gen, "cluster_generation_s": t_gen_d, "embkern": embkern.__version__, "dask": dask.__version__,
                   "cpus": os.cpu_count()}, fh, indent=2)
    print(f"wrote {path}", file=sys.stderr)
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
