"""``moalign label``: score the rows of a user's own file with K reward functions and write them in the data contract.

    moalign label --data mine.jsonl --rewards positivity conciseness --out scored.jsonl          # pointwise scores
    moalign label --data mine.jsonl --rewards positivity conciseness --pairs --out pairs.jsonl   # pairwise labels

The rows, the pairing rule and the errors are those of :mod:`moalign.data.label`; ``moalign train <method>
--dataset_path FILE --label_rewards ...`` labels through the same code (:func:`moalign.trainers.run.load_training_data`).
The output file gets a ``<file>.moalign.json`` sidecar with the objective names (the reward names, in order), so
``moalign train <method> --dataset_path <out>`` needs no ``--objectives``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LabelConfig:
    """Options of ``moalign label`` (every field is a command-line flag)."""

    data: str = field(metadata={"help": "The rows to label: a .jsonl, .csv or .parquet file (or a save_to_disk "
                                        "folder) with columns 'prompt' and 'completion' (one completion per row) or "
                                        "'prompt', 'completion_a' and 'completion_b' (one pair per row). Text or, in "
                                        "JSONL/Parquet, chat message lists. Other columns are kept."})
    rewards: list[str] = field(metadata={"help": "One reward function per objective, in order: offline scorers "
                                                 "(positivity, conciseness, simplicity, cleanliness, relevance), the "
                                                 "papers' hub reward models (moalign.rewards.registry), "
                                                 "'hf:<path or hub id>', or 'py:<module>:<callable>'; 'name=spec' "
                                                 "renames the objective."})
    out: str = field(metadata={"help": "Output file (.jsonl, .csv or .parquet), written with a .moalign.json "
                                       "sidecar that stores the objective names."})
    pairs: bool = field(default=False, metadata={
        "help": "Write pairwise rows (preference, scores_a, scores_b). Pair rows are labelled as they are; "
                "'prompt'/'completion' rows are grouped by prompt and every two distinct completions of one "
                "prompt become one pair (completion_a = the earlier row). Without --pairs: pointwise rows with "
                "'scores' (completion rows only)."})
    label_mode: str = field(default="hard", metadata={
        "help": "Pair labels: 'hard' (1 if a scores higher, 0 if lower, 0.5 on a tie) or 'bradley_terry' "
                "(sigmoid((score_a - score_b) / temperature))."})
    temperature: float = field(default=1.0, metadata={"help": "Bradley-Terry temperature (label_mode "
                                                              "'bradley_terry' only)."})
    unpaired: str = field(default="error", metadata={
        "help": "With --pairs on completion rows, a prompt with a single distinct completion forms no pair: "
                "'error' (names its row) or 'drop' (left out, counted in the printed report)."})
    duplicates: str = field(default="error", metadata={
        "help": "With --pairs on completion rows, a completion repeated under one prompt: 'error' or 'merge' "
                "(counted once, reported)."})
    max_pairs_per_prompt: int | None = field(default=None, metadata={
        "help": "With --pairs on completion rows: keep at most this many pairs per prompt (a seeded random "
                "subset, reported). Default: all n(n-1)/2."})
    seed: int = field(default=0, metadata={"help": "Seed of the max_pairs_per_prompt subset."})
    batch_size: int = field(default=64, metadata={"help": "Completions per reward-function call (the progress "
                                                          "bar moves per call)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Replace label columns the input already has ('scores', or 'preference'/'scores_a'/'scores_b'); "
                "without it they are an error."})

    def __post_init__(self) -> None:
        if not self.rewards:
            raise ValueError("--rewards: name at least one reward function, e.g. --rewards positivity conciseness")
        for name, value, allowed in (("label_mode", self.label_mode, ("hard", "bradley_terry")),
                                     ("unpaired", self.unpaired, ("error", "drop")),
                                     ("duplicates", self.duplicates, ("error", "merge"))):
            if value not in allowed:
                raise ValueError(f"--{name} must be one of {list(allowed)}, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.max_pairs_per_prompt is not None and self.max_pairs_per_prompt < 1:
            raise ValueError(f"--max_pairs_per_prompt must be >= 1 (or unset), got {self.max_pairs_per_prompt}")


def label_options(config: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`moalign.data.label.label_rows` that a :class:`LabelConfig` sets."""
    return {"pairs": config.pairs, "mode": config.label_mode, "temperature": config.temperature,
            "unpaired": config.unpaired, "duplicates": config.duplicates,
            "max_pairs_per_prompt": config.max_pairs_per_prompt, "seed": config.seed,
            "batch_size": config.batch_size, "overwrite": config.overwrite}


def run_label(config: LabelConfig) -> Any:
    """Label ``config.data`` with ``config.rewards`` and write ``config.out``; returns the labelled dataset."""
    from moalign.data.label import check_output_path, label_file, write_dataset
    from moalign.rewards.registry import resolve_rewards

    check_output_path(config.out, config.data)  # before the (possibly long) scoring
    reward_fns = resolve_rewards(list(config.rewards))
    labelled, report = label_file(config.data, reward_fns, **label_options(config))
    if report is not None:
        print(report)
    out = write_dataset(labelled, config.out)
    print(f"wrote {len(labelled)} {labelled.kind} rows to {out} (objectives {labelled.objectives}; "
          f"sidecar {out}.moalign.json)")
    return labelled
