"""One name per concept, one implementation per algorithm: read the source tree and count definitions.

Each concept below once had two or three definitions (with different argument orders or meanings);
these tests fail as soon as a second definition, or one of the retired names, reappears anywhere
under ``src/moalign`` (as a function, class, method, assignment or import alias).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "moalign"

# final name -> the one module (relative to src/moalign) that defines it
DEFINED_ONCE = {
    "score_completions": "rewards/labelling.py",
    "objective_names": "rewards/labelling.py",
    "preference_matrix": "rewards/labelling.py",
    "pair_preference": "rewards/labelling.py",
    "last_user_message": "rewards/base.py",
    "joined_prompt_text": "rewards/base.py",
    "completion_text": "rewards/base.py",
    "validate_scores": "rewards/base.py",
    "InvalidScoreError": "rewards/base.py",
    "render_prompt": "data/prompts.py",
    "has_chat_template": "data/prompts.py",
    "render_prompts": "eval/generate.py",
    "validate_steering_weights": "models/steering.py",
    "find_minilm_path": "rewards/offline.py",
    "load_minilm": "rewards/offline.py",
    "EmptyDataError": "data/io.py",
    # formulas the trainers and the synthetic benchmarks share (docs/design.md, "Layers": core)
    "next_threshold": "core/thresholds.py",
    "behaviour_cloning_loss": "core/cloning.py",
    "behaviour_cloning_logit_gradient": "core/cloning.py",
    "weighted_pair_labels": "core/pairs.py",
    "fit_normalization": "core/normalization.py",
    "normalize": "core/normalization.py",
    "interpolate_parameters": "core/soups.py",
    "modpo_target": "core/losses.py",
    "target_bounds": "data/ric.py",
    "round_conditions": "data/ric.py",
}

# names retired by the consolidation: they must not come back under any form
RETIRED = (
    "prompt_text",  # -> last_user_message (rewards) and joined_prompt_text (whole conversation)
    "preference_from_scores",  # -> pair_preference
    "preferences_from_scores",  # -> preference_matrix
    "validate_weights",  # -> validate_steering_weights
    "minilm_path",  # -> find_minilm_path
    "load_prompt_encoder",  # -> load_minilm
    "_named_reward_fns",  # -> the reward-function resolution inside rewards.labelling
    "_as_callable",  # idem
    "fit_minmax",  # -> RewardNormalizer("minmax").fit(scores, zero_spread="unit") (core.normalization)
    "normalise_rewards",  # -> core.normalization.fit_normalization + normalize (the toy's HaM map)
)


def _definitions() -> dict[str, list[str]]:
    """name -> ``["<module>:<line>", ...]`` for every def/class/assignment/import alias in the package."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        module = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.asname for a in node.names if a.asname]
            for name in names:
                found[name].append(f"{module}:{node.lineno}")
    return found


DEFINITIONS = _definitions()


def test_the_source_tree_is_where_this_test_looks():
    assert (SRC / "__init__.py").is_file() and len(DEFINITIONS) > 100


@pytest.mark.parametrize("name", sorted(DEFINED_ONCE))
def test_defined_exactly_once_in_its_home(name):
    places = DEFINITIONS.get(name, [])
    assert len(places) == 1, f"{name} must have exactly one definition, found {places or 'none'}"
    assert places[0].split(":")[0] == DEFINED_ONCE[name], f"{name} lives in {places[0]}, not {DEFINED_ONCE[name]}"


@pytest.mark.parametrize("name", RETIRED)
def test_retired_names_do_not_come_back(name):
    assert name not in DEFINITIONS, f"{name} was retired but is defined again at {DEFINITIONS[name]}"
    pattern = f"{name}("
    calls = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(pattern in line and f"_{pattern}" not in line and f".{pattern}" not in line
                    for line in p.read_text(encoding="utf-8").splitlines())]
    assert not calls, f"{name}(...) is still called in {calls}"


def test_one_minilm_loader():
    """MiniLM is constructed in one place (rewards.offline.load_minilm); everything else calls that."""
    constructions = [f"{p.relative_to(SRC).as_posix()}:{i}" for p in sorted(SRC.rglob("*.py"))
                     for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                     if "SentenceTransformer(" in line and not line.lstrip().startswith(("#", "``"))
                     and "``SentenceTransformer(" not in line]
    assert constructions == [constructions[0]] and constructions[0].startswith("rewards/offline.py:"), constructions
