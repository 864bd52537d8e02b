"""Random quantized blocks and tiny random-weight GGUF models, written with gguf.GGUFWriter."""

from __future__ import annotations

import gguf
import numpy as np

QT = gguf.GGMLQuantizationType

# Byte offsets of the float16 scale fields inside one block of each type.
_F16_FIELDS = {
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q8_0": (0,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
}


def random_blocks(
    type_name: str, n_elements: int, rng: np.random.Generator, scale: float = 0.02
) -> np.ndarray:
    """Raw bytes of ``n_elements`` values of a quantized type: random quants, sane scales."""
    qt = QT[type_name]
    if type_name == "F32":
        return (rng.standard_normal(n_elements) * scale * 5).astype(np.float32).view(np.uint8)
    if type_name == "F16":
        return (rng.standard_normal(n_elements) * scale * 5).astype(np.float16).view(np.uint8)
    if type_name == "BF16":
        bits = (rng.standard_normal(n_elements) * scale * 5).astype(np.float32).view(
            np.uint32
        ) >> 16
        return bits.astype(np.uint16).view(np.uint8)
    block, size = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(n_elements // block, size), dtype=np.uint8)
    for off in _F16_FIELDS[type_name]:
        d = (rng.standard_normal(raw.shape[0]) * scale).astype(np.float16)
        raw[:, off : off + 2] = d.view(np.uint8).reshape(-1, 2)
    return raw.reshape(-1)


def add_tensor(
    w: gguf.GGUFWriter,
    name: str,
    shape: tuple[int, ...],
    type_name: str,
    rng: np.random.Generator,
    scale: float = 1.0,
) -> None:
    """Add a random tensor of numpy ``shape`` (rows, cols) and the given type."""
    n = int(np.prod(shape))
    if type_name == "F32":
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1 * scale).astype(np.float32))
        return
    raw = random_blocks(type_name, n, rng, scale=0.004 * scale)
    block, size = gguf.GGML_QUANT_SIZES[QT[type_name]]
    byte_shape = (*shape[:-1], shape[-1] // block * size)
    w.add_tensor(name, raw.reshape(byte_shape), raw_dtype=QT[type_name])


def write_tiny_model(
    path,
    *,
    arch="llama",
    n_layers=2,
    dim=256,
    ffn=512,
    n_heads=4,
    n_kv=2,
    vocab=64,
    matrix_type="Q8_0",
    embd_type="Q8_0",
    output_type=None,
    qkv_bias=False,
    rope_scaling=None,
    rope_freqs=False,
    ctx=64,
    n_rot=None,
    seed=0,
    skip=(),
):
    """A random-weight model of a supported architecture; returns the path.

    ``output_type=None`` ties the output layer to token_embd. ``skip`` lists tensor names to
    leave out (for error tests).
    """
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    hd = dim // n_heads
    w.add_block_count(n_layers)
    w.add_context_length(ctx)
    w.add_embedding_length(dim)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(5000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(n_rot or hd)
    if rope_scaling:
        w.add_rope_scaling_type(gguf.RopeScalingType(rope_scaling[0]))
        w.add_rope_scaling_factor(rope_scaling[1])
    tensors = []

    def add(name, shape, t, scale=1.0):
        if name not in skip:
            tensors.append((name, shape, t, scale))

    add("token_embd.weight", (vocab, dim), embd_type)
    add("output_norm.weight", (dim,), "F32")
    if output_type:
        add("output.weight", (vocab, dim), output_type)
    if rope_freqs:
        add("rope_freqs.weight", ((n_rot or hd) // 2,), "F32")
    for i in range(n_layers):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", (dim,), "F32")
        add(p + "ffn_norm.weight", (dim,), "F32")
        add(p + "attn_q.weight", (n_heads * hd, dim), matrix_type)
        add(p + "attn_k.weight", (n_kv * hd, dim), matrix_type)
        add(p + "attn_v.weight", (n_kv * hd, dim), matrix_type)
        add(p + "attn_output.weight", (dim, n_heads * hd), matrix_type)
        add(p + "ffn_gate.weight", (ffn, dim), matrix_type)
        add(p + "ffn_up.weight", (ffn, dim), matrix_type)
        add(p + "ffn_down.weight", (dim, ffn), matrix_type)
        if qkv_bias:
            add(p + "attn_q.bias", (n_heads * hd,), "F32", 3.0)
            add(p + "attn_k.bias", (n_kv * hd,), "F32", 3.0)
            add(p + "attn_v.bias", (n_kv * hd,), "F32", 3.0)
    for name, shape, t, scale in tensors:
        if name.endswith("norm.weight"):
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
        elif name == "rope_freqs.weight":
            w.add_tensor(name, rng.uniform(1.0, 4.0, shape).astype(np.float32))
        else:
            add_tensor(w, name, shape, t, rng, scale)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
