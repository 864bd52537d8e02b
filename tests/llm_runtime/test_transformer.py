"""The Numba forward pass against the float64 reference, on tiny random GGUFs."""

import numpy as np
import pytest

from grammask.errors import ModelFormatError
from grammask.llm_runtime.transformer import Transformer

from .reference import ReferenceModel
from .tiny_gguf import write_tiny_model

TOKENS = [3, 17, 5, 60, 1, 2, 33, 9]

# Float-path weight types (no activation quantization): the forward must match the
# float64 reference to float32 accuracy, which checks every piece of the block.
EXACT_CASES = {
    "llama-gqa-f16": {"matrix_type": "F16", "embd_type": "BF16", "output_type": "F32"},
    "qwen2-bias-neox": {
        "arch": "qwen2",
        "qkv_bias": True,
        "matrix_type": "BF16",
        "embd_type": "F16",
        "output_type": "BF16",
    },
    "llama-rope-linear-freqs": {
        "matrix_type": "BF16",
        "embd_type": "F32",
        "rope_scaling": ("linear", 2.0),
        "rope_freqs": True,
        "n_heads": 4,
        "n_kv": 1,
    },
    "llama-partial-rotary-mha": {
        "matrix_type": "F16",
        "embd_type": "F16",
        "n_heads": 4,
        "n_kv": 4,
        "n_rot": 32,
    },
}


@pytest.mark.parametrize("case", sorted(EXACT_CASES))
def test_forward_matches_reference(tmp_path, case):
    path = write_tiny_model(tmp_path / "m.gguf", **EXACT_CASES[case])
    model = Transformer(path)
    got = model.forward(TOKENS, all_logits=True)
    ref = ReferenceModel(str(path)).logits(TOKENS)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    "matrix_type", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
)
def test_int8_path_forward_matches_emulating_reference(tmp_path, matrix_type):
    # Activations are quantized to int8 per block of 32 (as llama.cpp does); the reference
    # does the same rounding, so positions agree to float32 accuracy. Rarely a value lies so
    # close to a rounding boundary that float32 and float64 upstream sums round it to
    # neighbouring int8s (one step, <1% of the block's range); such a position is allowed a
    # bounded difference, but only one position in eight.
    path = write_tiny_model(
        tmp_path / "m.gguf", matrix_type=matrix_type, embd_type="Q8_0", arch="qwen2", qkv_bias=True
    )
    got = Transformer(path).forward(TOKENS, all_logits=True)
    ref = ReferenceModel(str(path), emulate_int8=True).logits(TOKENS)
    scale = np.abs(ref).max()
    row_err = np.abs(got - ref).max(axis=1) / scale
    assert np.sum(row_err > 2e-5) <= 1, row_err
    assert row_err.max() < 0.02, row_err


def test_decode_step_by_step_equals_prefill_and_truncate_rolls_back(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", matrix_type="Q4_1")
    model = Transformer(path)
    full = model.forward(TOKENS, all_logits=True)
    model.reset()
    steps = np.array([model.forward([t]) for t in TOKENS])
    np.testing.assert_allclose(steps, full, rtol=0, atol=1e-4 * np.abs(full).max())
    model.truncate(3)
    assert model.tokens == TOKENS[:3]
    again = model.forward(TOKENS[3:], all_logits=True)
    np.testing.assert_allclose(again, full[3:], rtol=0, atol=1e-4 * np.abs(full).max())
    with pytest.raises(ValueError):
        model.truncate(99)


def test_context_overflow_names_the_limit(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", ctx=16)
    model = Transformer(path)
    assert model.n_ctx == 16
    model.forward(list(range(10)))
    with pytest.raises(ValueError, match="n_ctx 16"):
        model.forward(list(range(7)))
    with pytest.raises(ValueError, match="out of range"):
        model.forward([64])


def test_missing_tensor_and_bad_shape(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", skip=("blk.1.ffn_up.weight",))
    with pytest.raises(ModelFormatError, match="blk.1.ffn_up.weight"):
        Transformer(path)


def test_unsupported_architecture_and_quant_type(tmp_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "gpt.gguf"), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match="unsupported architecture 'gpt2'"):
        Transformer(tmp_path / "gpt.gguf")

    path = write_tiny_model(tmp_path / "m.gguf", skip=("blk.0.attn_v.weight",))
    # re-write with a Q2_K tensor in place of attn_v
    w = gguf.GGUFWriter(str(tmp_path / "q2.gguf"), "llama")
    from grammask.llm_runtime.gguf_file import GGUFFile

    src = GGUFFile(path)
    for k in (
        "block_count",
        "context_length",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
    ):
        w.add_uint32(f"llama.{k}", int(src.metadata[f"llama.{k}"]))
    for name, t in src.tensors.items():
        w.add_tensor(
            name,
            np.array(src.tensor_bytes(name))
            .reshape(t.shape[0] if len(t.shape) > 1 else 1, -1)
            .squeeze(0)
            if len(t.shape) == 1
            else np.array(src.tensor_bytes(name)).reshape(t.shape[0], -1),
            raw_dtype=gguf.GGMLQuantizationType(t.type_id),
        )
    q2 = np.zeros((128, 256 // 256 * 84), np.uint8)
    w.add_tensor("blk.0.attn_v.weight", q2, raw_dtype=gguf.GGMLQuantizationType.Q2_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFormatError, match=r"blk.0.attn_v.weight.*Q2_K"):
        Transformer(tmp_path / "q2.gguf")


def test_kv_cache_grows_past_its_first_capacity(tmp_path):
    path = write_tiny_model(tmp_path / "m.gguf", ctx=1024, matrix_type="F16", embd_type="F16")
    toks = np.random.default_rng(0).integers(0, 64, 300).tolist()
    whole = Transformer(path).forward(toks, all_logits=True)
    model = Transformer(path)
    assert model.k_cache.shape[2] == 256
    model.forward(toks[:200])
    tail = model.forward(toks[200:], all_logits=True)
    assert 300 <= model.k_cache.shape[2] <= 1024
    np.testing.assert_allclose(tail, whole[200:], rtol=0, atol=1e-4 * np.abs(whole).max())
