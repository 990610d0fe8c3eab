"""Export exactness: folders written by ``moalign export`` and read by plain transformers in a fresh interpreter
(no moalign import) give moalign's policy -- next-token log-probs within 1e-5 and identical greedy text.

Truth is computed here, independently of the export code: for heads, the steered log-probs by hand from each
head's logits (``log_softmax(sum_k w_k log_softmax(z_k))``, MOPO paper App. A.6); for every family, moalign's own
policy (the model under its evaluation policy context, or on the conditioned prompt). Both in float32 and, on the
same float32 weights, in float64 arithmetic (which isolates what the export changes from the model's own float32
rounding).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from moalign.eval.generate import policy_context
from moalign.inference import load_policy

PROBE = Path(__file__).with_name("plain_transformers_probe.py")
TOLERANCE = 1e-5
PROMPTS = ["hello you", "tell me a story about the cat"]
MAX_NEW_TOKENS = 8

#: case -> (folder fixture key, weights): heads (low-rank, full, a vertex), SCA between two heads, soups of
#: MultiHeadCausalLM specialists (two weights) and of PEFT adapters, the conditioned MO-ODPO (system message), P-MORL
#: (trained on raw text) and RiC, MODPO's model
CASES = {
    "mopo_low_rank_0.7": ("mopo_low_rank", (0.7, 0.3)),
    "mopo_low_rank_0.2": ("mopo_low_rank", (0.2, 0.8)),
    "mopo_low_rank_vertex": ("mopo_low_rank", (0.0, 1.0)),
    "mopo_full_0.4": ("mopo_full", (0.4, 0.6)),
    "sca_0.3": ("sca", (0.3, 0.7)),
    "soup_0.3": ("soup", (0.3, 0.7)),
    "soup_0.9": ("soup", (0.9, 0.1)),
    "mo_odpo_0.7": ("mo_odpo", (0.7, 0.3)),
    "p_morl_raw_text_0.4": ("p_morl", (0.4, 0.6)),
    "rewarded_soups_0.5": ("rewarded_soups", (0.5, 0.5)),
    "ric_0.6": ("ric", (0.6, 0.4)),
    "modpo_0.8": ("modpo", (0.8, 0.2)),
}
IDS = torch.randint(4, 80, (4, 10), generator=torch.Generator().manual_seed(0))
MEASURED: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def probed(folders, tmp_path_factory) -> tuple[dict, dict]:
    """Export every case, then read all exports in one plain-transformers subprocess: (exports, probe results)."""
    root = tmp_path_factory.mktemp("exports")
    exports = {case: load_policy(folders[key]).export(weights, root / case) for case, (key, weights) in CASES.items()}
    request = {case: {"dir": str(path), "ids": IDS.tolist(), "max_new_tokens": MAX_NEW_TOKENS,
                      "chats": [[{"role": "user", "content": p}] for p in PROMPTS]} for case, path in exports.items()}
    (root / "request.json").write_text(json.dumps(request))
    run = subprocess.run([sys.executable, str(PROBE), str(root / "request.json"), str(root / "result.json")],
                         cwd=root, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return exports, json.loads((root / "result.json").read_text())


def moalign_log_probs(folder: Path, weights: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    """moalign's policy of ``weights`` on IDS: the model under the family's evaluation policy (no prompt rewrite:
    a conditioned policy's parameters do not depend on the weights, its prompt does -- checked by text below)."""
    policy = load_policy(folder, dtype=dtype)
    target = policy.family.target(policy.check_weights(weights))
    with torch.no_grad(), policy_context(target.model, target.policy) as model:
        return torch.log_softmax(model(input_ids=IDS).logits.to(dtype), dim=-1)


def hand_steered(folder: Path, weights: tuple[float, ...], coefficients: list[float] | None = None) -> torch.Tensor:
    """Steered log-probs by hand in float64 from each head's own logits on the backbone's hidden states."""
    model = load_policy(folder, dtype=torch.float64).family.model
    c = coefficients or list(weights)
    with torch.no_grad():
        hidden = model.hidden_states(IDS)
        per_head = [torch.log_softmax(model.output.head_logits(hidden, k), dim=-1) for k in range(model.num_heads)]
        return torch.log_softmax(sum(ck * lp for ck, lp in zip(c, per_head) if ck > 0), dim=-1)


def test_no_moalign_import_in_the_probe(probed):
    assert probed[1]["_moalign_imported"] is False


@pytest.mark.parametrize("case", sorted(CASES))
def test_exported_log_probs_equal_moalign(case, probed, folders):
    key, weights = CASES[case]
    result = probed[1][case]
    for name, dtype in (("logp32", torch.float32), ("logp64", torch.float64)):
        exported = torch.tensor(result[name], dtype=torch.float64)
        delta = (exported - moalign_log_probs(folders[key], weights, dtype).double()).abs().max().item()
        MEASURED.setdefault(case, {})[name] = delta
        assert delta <= TOLERANCE, f"{case} {name}: max |delta log-prob| = {delta:.3g}"


@pytest.mark.parametrize("case", [c for c in sorted(CASES) if CASES[c][0].startswith(("mopo", "sca"))])
def test_exported_heads_equal_the_hand_computed_steering(case, probed, folders):
    key, weights = CASES[case]
    coefficients = [0.4, 0.6, 0.0] if key == "sca" else None  # 0.3 = 0.4 * 0 + 0.6 * 0.5 (heads w_0_1, w_0.5_0.5)
    truth = hand_steered(folders[key], weights, coefficients)
    for name in ("logp32", "logp64"):
        delta = (torch.tensor(probed[1][case][name], dtype=torch.float64) - truth).abs().max().item()
        assert delta <= TOLERANCE, f"{case} {name} vs hand-computed steering: {delta:.3g}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_text_and_rendered_prompt_are_moalign_s(case, probed, folders):
    key, weights = CASES[case]
    policy = load_policy(folders[key])
    result = probed[1][case]
    assert result["rendered"] == policy.prompt_texts(PROMPTS, weights)
    expected = policy.generate(PROMPTS, weights, max_new_tokens=MAX_NEW_TOKENS, precision="fp32")
    assert any(e.strip() for e in expected)  # a real comparison, not two empty answers
    assert result["greedy"] == expected
    assert [p.strip() for p in result["pipeline"]] == [e.strip() for e in expected]


def test_conditioning_is_in_the_exported_chat_template(probed):
    rendered = probed[1]["mo_odpo_0.7"]["rendered"][0]
    assert "[Begin System Instruction]\nhelpful: 0.7, short: 0.3\n[End System Instruction]" in rendered
    assert rendered.index("system") < rendered.index("hello you")
    assert "<rm1_score>" in probed[1]["ric_0.6"]["rendered"][0]


def test_export_folder_is_ready_for_the_hub(probed):
    exports, _ = probed
    folder = exports["mopo_low_rank_0.7"]
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (folder / name).is_file(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is False
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "helpful = 0.7, short = 0.3" in card
    assert "mopo" in card and "training data" in card and "measured front" in card


def test_report_measured_deltas(probed):
    """Print the measured max |delta log-prob| per case (run with -s to see them)."""
    if MEASURED:
        print("\nmax |delta log-prob| exported vs moalign:")
        for case, values in sorted(MEASURED.items()):
            print(f"  {case:<22} float32 {values.get('logp32', float('nan')):.2e}  "
                  f"float64 {values.get('logp64', float('nan')):.2e}")
