"""Multi-head causal LMs (one policy head per objective on a shared backbone), steering and loading.

See the MOPO paper App. A.6 and the HaM paper Sec. 3.5, and docs/design.md
(MOPO 6, lagged reference; MOPO 8, heads and steering).  Test helpers (tiny
models/tokenizers, a tensor-memory tracker) live in :mod:`moalign.models.testing`.
"""

from moalign.models.config import MultiHeadConfig
from moalign.models.heads import FullHead, LowRankHead, MultiHeadOutput, PolicyHead
from moalign.models.loading import (
    SMOLLM2_NAME,
    ensure_smollm2_cache,
    load_base_model,
    load_smollm2,
    load_tokenizer,
    smollm2_cache_dir,
    smollm2_gguf_path,
)
from moalign.models.multihead import MultiHeadCausalLM
from moalign.models.steering import combine_head_log_probs, parse_divergence, steered_log_probs

__all__ = [
    "FullHead",
    "LowRankHead",
    "MultiHeadCausalLM",
    "MultiHeadConfig",
    "MultiHeadOutput",
    "PolicyHead",
    "SMOLLM2_NAME",
    "combine_head_log_probs",
    "ensure_smollm2_cache",
    "load_base_model",
    "load_smollm2",
    "load_tokenizer",
    "parse_divergence",
    "smollm2_cache_dir",
    "smollm2_gguf_path",
    "steered_log_probs",
]
