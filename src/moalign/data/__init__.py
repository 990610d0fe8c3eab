"""Multi-objective preference datasets (docs/design.md, "Data contract").

- :mod:`moalign.data.schema`: the contract, :class:`MultiObjectiveDataset`, validation.
- :mod:`moalign.data.io`: :func:`load_multi_objective` (files, folders, in-memory) and save/export.
- :mod:`moalign.data.convert`: scores <-> pairwise, TRL <-> pairwise, pairwise -> pointwise, conflicting pairs.
- :mod:`moalign.data.hub`: recipes for Anthropic/hh-rlhf, openai/summarize_from_feedback, PKU-SafeRLHF.

Labels from scores and the scoring of completions are :mod:`moalign.rewards.labelling`'s
(``pair_preference``, ``score_completions``); ``data`` imports ``rewards``, never the reverse.
"""

from moalign.data.convert import (
    ConversionReport,
    conflicting_pairs,
    pairwise_from_trl,
    pairwise_to_pointwise,
    pairwise_to_trl,
    scores_to_pairwise,
)
from moalign.data.io import EmptyDataError, from_hf_dataset, from_rows, load_multi_objective
from moalign.data.schema import (
    DatasetValidationError,
    MultiObjectiveDataset,
    ValidationIssue,
    validate_columns,
)

__all__ = [
    "ConversionReport", "DatasetValidationError", "EmptyDataError", "MultiObjectiveDataset", "ValidationIssue",
    "conflicting_pairs", "from_hf_dataset", "from_rows", "load_multi_objective", "pairwise_from_trl",
    "pairwise_to_pointwise", "pairwise_to_trl", "scores_to_pairwise", "validate_columns",
]
