"""``moalign train <method> --dataset_path FILE --label_rewards ...`` on a local file of unlabelled rows: the rows are
labelled by ``moalign label``'s code (same scores and pairs as ``moalign label`` writes), for pairwise and pointwise
methods; online methods and conflicting objectives are refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moalign.cli.main import main, parse_config
from moalign.data import load_multi_objective
from moalign.methods.registry import get_method
from moalign.trainers.run import load_eval_data, load_training_data
from tests.cli.test_label import REWARDS, ROWS, direct_scores
from tests.cli_setup import save_tiny_model, write_config, write_jsonl

EXAMPLES = Path(__file__).parents[2] / "examples" / "configs"


def config_for(method: str, tmp_path: Path, *flags: str):
    """The method's config from flags alone (no model needed to load data)."""
    return parse_config(get_method(method).config_class,
                        ["--output_dir", str(tmp_path / "out"), "--use_cpu", "true", "--report_to", "none", *flags],
                        f"moalign train {method}")


def test_pointwise_method_gets_the_scores_moalign_label_writes(tmp_path):
    raw = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    config = config_for("ham", tmp_path, "--dataset_path", str(raw), "--label_rewards", *REWARDS)
    data = load_training_data(config, kind="pointwise")
    assert data.kind == "pointwise" and data.objectives == ["good", "short"]
    assert data.dataset["scores"] == direct_scores([r["prompt"] for r in ROWS], [r["completion"] for r in ROWS])
    assert main(["label", "--data", str(raw), "--rewards", *REWARDS, "--out", str(tmp_path / "scored.jsonl")]) == 0
    assert load_multi_objective(tmp_path / "scored.jsonl").dataset.to_list() == data.dataset.to_list()


def test_pairwise_method_pairs_the_completions_as_moalign_label(tmp_path):
    raw = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    config = config_for("mopo", tmp_path, "--dataset_path", str(raw), "--eval_dataset_path", str(raw),
                        "--label_rewards", *REWARDS)
    data = load_training_data(config, kind="pairwise")
    assert main(["label", "--data", str(raw), "--rewards", *REWARDS, "--pairs", "--out",
                 str(tmp_path / "pairs.jsonl")]) == 0
    assert load_multi_objective(tmp_path / "pairs.jsonl").dataset.to_list() == data.dataset.to_list()
    assert len(data) == 4 and data.objectives == ["good", "short"]
    assert load_eval_data(config, data.objectives, kind="pairwise").dataset.to_list() == data.dataset.to_list()


def test_pair_rows_for_a_pointwise_method_become_scored_completions(tmp_path):
    rows = [{"prompt": "q", "completion_a": "good good", "completion_b": "fine answer here"}]
    raw = write_jsonl(tmp_path / "pairs_in.jsonl", rows)
    data = load_training_data(config_for("sca", tmp_path, "--dataset_path", str(raw), "--label_rewards", *REWARDS),
                              kind="pointwise")
    assert data.dataset["completion"] == ["good good", "fine answer here"]
    assert data.dataset["scores"] == direct_scores(["q", "q"], ["good good", "fine answer here"])


def test_sca_trains_on_unlabelled_rows_through_the_cli(tmp_path):
    """The issue's command: `moalign train sca --dataset_path mine.jsonl --label_rewards ...` (it used to stop with
    "missing required column 'scores'")."""
    raw = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    out = tmp_path / "out"
    assert main(["train", "sca", "--config", str(EXAMPLES / "sca_local_smollm2.yaml"),
                 "--model_name_or_path", str(save_tiny_model(tmp_path / "tiny")), "--output_dir", str(out),
                 "--dataset_path", str(raw), "--label_rewards", *REWARDS, "--max_steps", "1",
                 "--per_device_train_batch_size", "2", "--max_completion_length", "4", "--lora_r", "4",
                 "--head_rank", "2", "--use_chat_template", "false", "--disable_tqdm", "true", "--debug"]) == 0
    import torch

    assert torch.load(out / "sca_state.pt", weights_only=False)["objectives"] == ["good", "short"]
    assert json.loads((out / "multihead_config.json").read_text())["multihead"]["num_heads"] == 5


def test_errors(tmp_path, capsys):
    raw = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    config = config_for("mopo", tmp_path, "--dataset_path", str(raw), "--label_rewards", *REWARDS,
                        "--objectives", "relevance", "conciseness")
    with pytest.raises(ValueError, match=r"objectives=\['relevance', 'conciseness'\] but label_rewards names the "
                                         r"objectives \['good', 'short'\]"):
        load_training_data(config, kind="pairwise")
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [{**r, "scores": [1.0, 2.0]} for r in ROWS])
    config = config_for("ham", tmp_path, "--dataset_path", str(labelled), "--label_rewards", *REWARDS)
    with pytest.raises(ValueError, match=r"(?s)labelled.jsonl: row 0 \(line 1\), column 'scores'.*moalign label --data"):
        load_training_data(config, kind="pointwise")
    prompts = write_config(tmp_path / "c.yaml", dataset_path=raw, reward_functions=REWARDS, label_rewards=REWARDS,
                           output_dir=tmp_path / "o", model_name_or_path="unused")
    assert main(["train", "mo_odpo", "--config", str(prompts)]) == 2
    assert "label_rewards labels offline data" in capsys.readouterr().err
