"""Choosing the next token from logits: greedy, temperature, top-k, top-p (nucleus)."""

from __future__ import annotations

import numpy as np


def sample_token(
    logits: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    rng: np.random.Generator | None = None,
) -> int:
    """The id of the next token.

    ``temperature <= 0`` is greedy (argmax; ties go to the lowest id). Otherwise the logits
    are divided by ``temperature``, restricted to the ``top_k`` largest (0: all), then to the
    smallest set whose probability reaches ``top_p``, and sampled with ``rng``. Logits of
    ``-inf`` (masked tokens) are never chosen; raises ValueError if every logit is -inf.
    """
    logits = np.asarray(logits)
    if temperature <= 0:
        best = int(np.argmax(logits))
        if logits[best] == -np.inf:
            raise ValueError("every token is masked (all logits are -inf)")
        return best
    if rng is None:
        rng = np.random.default_rng()
    # masked tokens first: numpy's selection slows down badly on many equal -inf values,
    # and a grammar mask often leaves only a handful of candidates
    finite = np.flatnonzero(logits > -np.inf)
    if finite.shape[0] < logits.shape[0]:
        ids0, logits = finite, logits[finite]
    else:
        ids0 = None
    n = logits.shape[0]
    if 0 < top_k < n:
        ids = np.argpartition(logits, n - top_k)[n - top_k :]
    else:
        ids = np.arange(n)
    vals = logits[ids].astype(np.float64) / temperature
    if ids0 is not None:
        ids = ids0[ids]
    keep = vals > -np.inf
    if not keep.any():
        raise ValueError("every token is masked (all logits are -inf)")
    ids, vals = ids[keep], vals[keep]
    probs = np.exp(vals - vals.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        cut = int(np.searchsorted(cum, top_p)) + 1  # smallest prefix reaching top_p
        order = order[:cut]
        ids, probs = ids[order], probs[order] / probs[order].sum()
    return int(ids[rng.choice(len(ids), p=probs)])
