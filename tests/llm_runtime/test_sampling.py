import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from grammask.llm_runtime.sampling import sample_token

logit_arrays = arrays(
    np.float32, st.integers(2, 60), elements=st.floats(-20, 20, width=32, allow_nan=False)
)


@given(logit_arrays)
def test_greedy_is_argmax(logits):
    assert sample_token(logits, temperature=0) == int(np.argmax(logits))


@settings(max_examples=50)
@given(
    logit_arrays,
    st.integers(0, 2**32 - 1),
    st.floats(0.1, 2.0),
    st.floats(0.05, 1.0),
    st.integers(0, 10),
)
def test_sample_stays_in_top_k_and_nucleus(logits, seed, temperature, top_p, top_k):
    rng = np.random.default_rng(seed)
    tok = sample_token(logits, temperature=temperature, top_p=top_p, top_k=top_k, rng=rng)
    order = np.argsort(-logits.astype(np.float64), kind="stable")
    if top_k:
        # the k largest (with ties at the boundary, any of the tied values)
        assert logits[tok] >= logits[order[min(top_k, len(logits)) - 1]]
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    # tokens strictly less probable than the nucleus boundary cannot be drawn; the boundary
    # is computed over all tokens, so with top_k the allowed set can only be smaller
    if not top_k:
        cum = np.cumsum(p[order])
        boundary = order[min(int(np.searchsorted(cum, top_p)), len(order) - 1)]
        assert p[tok] >= p[boundary] * (1 - 1e-9)


@settings(max_examples=30)
@given(logit_arrays, st.integers(0, 2**32 - 1))
def test_masked_tokens_never_sampled(logits, seed):
    logits = logits.copy()
    logits[::2] = -np.inf
    rng = np.random.default_rng(seed)
    for _ in range(5):
        assert sample_token(logits, temperature=1.0, rng=rng) % 2 == 1
    assert sample_token(logits, temperature=0) % 2 == 1


def test_all_masked_raises():
    with pytest.raises(ValueError, match="masked"):
        sample_token(np.full(4, -np.inf), temperature=0.7)
    with pytest.raises(ValueError, match="masked"):
        sample_token(np.full(4, -np.inf), temperature=0)


def test_frequencies_follow_softmax():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(0)
    counts = np.bincount(
        [sample_token(logits, temperature=1.0, rng=rng) for _ in range(4000)], minlength=4
    )
    np.testing.assert_allclose(counts / 4000, [0.5, 0.3, 0.15, 0.05], atol=0.03)
    # top_p=0.7 keeps {0, 1}: renormalized 0.625 / 0.375
    counts = np.bincount(
        [sample_token(logits, temperature=1.0, top_p=0.7, rng=rng) for _ in range(4000)],
        minlength=4,
    )
    np.testing.assert_allclose(counts / 4000, [0.625, 0.375, 0, 0], atol=0.03)
