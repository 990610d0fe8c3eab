"""``moalign judge``: automated pairwise win rates of two methods of ``moalign compare --task demo``.

The judge and the protocol are :mod:`moalign.eval.judge` (after the automated evaluation of the MO-ODPO
paper, "Robust Multi-Objective Preference Alignment with Online DPO", arXiv 2503.00295): here the two
methods' policies are matched by equal weight vector, and every matched pair's greedy responses to the
held-out test prompts are judged per objective, both orders asked. ``base`` (the base model's responses,
``base_eval.json``) matches every weight. The test prompts are compare.json's ``test_prompts`` (older files:
the seeded split of its config, :func:`demo_test_prompts`).

This module sits in the experiments layer because it reads that layer's output and split
(``moalign.eval`` never imports upward).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from moalign.eval.judge import JudgeConfig, pairwise_win_rate

_WHAT = "output of `moalign compare --task demo`"


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON file of a comparison run; a missing or malformed file is an error naming it and ``what`` it is."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None


def read_compare(compare_dir: str | Path) -> dict[str, Any]:
    """``compare.json`` of a demo comparison (errors name the file)."""
    path = Path(compare_dir) / "compare.json"
    result = read_json(path, _WHAT)
    if result.get("task") != "demo":
        raise ValueError(f"{path}: task {result.get('task')!r} has no responses to judge (only --task demo "
                         "stores completions)")
    return result


def demo_test_prompts(result: dict[str, Any]) -> list[str]:
    """The held-out test prompts of a demo comparison, in order: as stored (``test_prompts``), or, for a
    compare.json written before they were stored, the seeded split of its stored config."""
    if result.get("test_prompts"):
        return list(result["test_prompts"])
    from moalign.experiments.compare import CompareConfig
    from moalign.experiments.compare_demo import demo_config
    from moalign.experiments.demo import split_prompts

    names = {f.name for f in dataclasses.fields(CompareConfig)}
    config = CompareConfig(**{k: v for k, v in result.get("config", {}).items() if k in names})
    return split_prompts(demo_config(config))["test"]


def judged_policies(result: dict[str, Any], compare_dir: str | Path, method: str) -> list[dict[str, Any]]:
    """The policies (``name``, ``weights``, ``completions``) of ``method`` in ``result`` (the comparison's
    compare.json, read by :func:`read_compare`); ``base`` = the base model's, from ``base_eval.json``."""
    folder = Path(compare_dir)
    if method == "base":
        base = read_json(folder / "base_eval.json", "the base model's responses")
        return [{"name": "base", "weights": None, "completions": base["completions"]}]
    if method not in result.get("methods", {}):
        raise ValueError(f"{folder / 'compare.json'}: no method {method!r}; it holds "
                         + ", ".join([*result.get("methods", {}), "base"]))
    return result["methods"][method]["policies"]


def match_policies(result: dict[str, Any], compare_dir: str | Path, method_x: str, method_y: str,
                   num_prompts: int) -> list[tuple[list[float], dict, dict]]:
    """``[(weights, policy of x, policy of y), ...]`` at equal weight vectors (``base`` matches every weight)."""
    if method_x == method_y:
        raise ValueError(f"compare two different methods, got {method_x!r} twice")
    sides = {m: judged_policies(result, compare_dir, m) for m in (method_x, method_y)}
    for m, pols in sides.items():
        for p in pols:
            if len(p["completions"]) != num_prompts:
                raise ValueError(f"{compare_dir}: method {m!r}, policy {p['name']!r} has {len(p['completions'])} "
                                 f"completions for {num_prompts} test prompts")
    weighted: dict[str, dict[tuple, dict]] = {}
    for m, pols in ((m, pols) for m, pols in sides.items() if m != "base"):
        weighted[m] = {}
        for p in (p for p in pols if p["weights"] is not None):
            weighted[m].setdefault(tuple(round(float(v), 6) for v in p["weights"]), p)
        if not weighted[m]:
            raise ValueError(f"method {m!r} has no weight-indexed policies ({', '.join(p['name'] for p in pols)}), "
                             "so none can be matched by weight (HaM's heads, for example, carry no weights)")
    if "base" in sides:
        other, base = (method_y, sides["base"][0]) if method_x == "base" else (method_x, sides["base"][0])
        return [(list(w), *((base, p) if method_x == "base" else (p, base))) for w, p in weighted[other].items()]
    common = [w for w in weighted[method_x] if w in weighted[method_y]]
    if not common:
        listed = {m: [list(w) for w in weighted[m]] for m in (method_x, method_y)}
        raise ValueError(f"methods {method_x!r} and {method_y!r} share no weight vector ({method_x}: "
                         f"{listed[method_x]}; {method_y}: {listed[method_y]})")
    return [(list(w), weighted[method_x][w], weighted[method_y][w]) for w in common]


def _objectives(result: dict[str, Any], objectives: Sequence[str] | None, compare_dir: str | Path) -> list[str]:
    known = list(result.get("objectives", []))
    chosen = list(objectives) if objectives else known
    unknown = [o for o in chosen if o not in known]
    if unknown or not chosen:
        raise ValueError(f"{Path(compare_dir) / 'compare.json'}: unknown objective(s) {unknown}; it has {known}")
    return chosen


def judge_compare(compare_dir: str | Path, method_x: str, method_y: str, judge: Any,
                  objectives: Sequence[str] | None = None, *, prompts: Sequence[str] | None = None,
                  num_samples: int = 1000, seed: int = 0, progress: bool = False,
                  matches: list[tuple[list[float], dict, dict]] | None = None) -> dict[str, Any]:
    """Win rates of ``method_x`` over ``method_y`` per matched weight and objective, as a JSON-able dict.

    ``objectives``: default all of the comparison's. ``prompts``: default the comparison's test prompts
    (:func:`demo_test_prompts`). ``judge``: a :class:`moalign.eval.judge.Judge` or a callable. ``matches``:
    the output of :func:`match_policies` when the caller already has it (default: matched here).
    """
    result = read_compare(compare_dir)
    objectives = _objectives(result, objectives, compare_dir)
    prompts = list(prompts) if prompts is not None else demo_test_prompts(result)
    if matches is None:
        matches = match_policies(result, compare_dir, method_x, method_y, len(prompts))
    rows = []
    for weights, px, py in tqdm(matches, desc=f"judge {method_x} vs {method_y}", disable=not progress):
        results = {o: pairwise_win_rate(judge, prompts, px["completions"], py["completions"], o,
                                        num_samples=num_samples, seed=seed) for o in objectives}
        rows.append({"weights": weights, "policy_x": px["name"], "policy_y": py["name"], "objectives": results})
    info = judge.info() if hasattr(judge, "info") else {"kind": type(judge).__name__}
    return {"compare_dir": str(compare_dir), "method_x": method_x, "method_y": method_y, "objectives": objectives,
            "num_prompts": len(prompts), "judge": info, "bootstrap": {"num_samples": num_samples, "seed": seed},
            "protocol": "win(x) = 1/2 (P(x first) + 1 - P(y first)) per prompt, identical responses 1/2; mean over "
                        "prompts with a percentile-bootstrap CI", "matches": rows}


@dataclass
class JudgeRunConfig(JudgeConfig):
    """Settings of ``moalign judge`` (the judge's own settings are inherited from ``JudgeConfig``)."""

    compare: str = field(default="", metadata={"help": "Folder of a finished `moalign compare --task demo` "
                                                       "(compare.json, base_eval.json)."})
    methods: list[str] = field(default_factory=list, metadata={
        "help": "The two methods X,Y (comma- or space-separated; 'base' = the base model). Win rates are X's."})
    objectives: list[str] | None = field(default=None, metadata={"help": "Objectives to judge (default: all of "
                                                                         "the comparison's)."})
    out: str = field(default="", metadata={"help": "Output JSON file (default: COMPARE/judge_X_vs_Y.json)."})
    bootstrap_samples: int = field(default=1000, metadata={"help": "Bootstrap resamples of every CI."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over the matched weights."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.methods = [m.strip() for item in self.methods for m in str(item).split(",") if m.strip()]
        if not self.compare:
            raise ValueError("moalign judge needs --compare DIR (a `moalign compare --task demo` output folder)")
        if len(self.methods) != 2:
            raise ValueError(f"--methods needs exactly two methods X,Y, got {self.methods or 'none'}")
        if self.objectives is not None:
            self.objectives = [o.strip() for item in self.objectives for o in str(item).split(",") if o.strip()]
        if not self.out:
            self.out = str(Path(self.compare) / f"judge_{self.methods[0]}_vs_{self.methods[1]}.json")


def render_judge_table(result: dict[str, Any]) -> str:
    """The win rates as a Markdown table (one row per matched weight and objective)."""
    x, y = result["method_x"], result["method_y"]
    lines = [f"| weights | objective | {x} policy | {y} policy | win rate of {x} [95% CI] | wins / ties / losses "
             "| position bias | order consistency |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    for m in result["matches"]:
        for o, r in m["objectives"].items():
            lines.append(f"| {', '.join(f'{v:g}' for v in m['weights'])} | {o} | {m['policy_x']} | {m['policy_y']} | "
                         f"{r['win_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['wins']} / {r['ties']} / "
                         f"{r['losses']} | {fmt(r['position_bias'])} | {fmt(r['order_consistency'])} |")
    lines += ["", f"Win rate: P(the judge prefers {x}'s response), both orders averaged, mean over "
                  f"{result['num_prompts']} test prompts; 0.5 = no preference. Position bias: mean P(first) "
                  "(0.5 = none). Judge: " + str(result["judge"].get("judge_model", result["judge"].get("kind")))]
    return "\n".join(lines)


def run_judge(config: JudgeRunConfig) -> dict[str, Any]:
    """Check the inputs, load the judge, judge every matched weight, write the JSON, print the table."""
    from moalign.eval.judge import CausalLMJudge
    from moalign.experiments.compare_report import write_json

    x, y = config.methods
    compare = read_compare(config.compare)
    prompts = demo_test_prompts(compare)
    judge_config = JudgeConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(JudgeConfig)})
    for objective in _objectives(compare, config.objectives, config.compare):  # bad input fails before loading
        judge_config.describe(objective)
    matches = match_policies(compare, config.compare, x, y, len(prompts))
    judge = CausalLMJudge.from_config(judge_config)
    result = judge_compare(config.compare, x, y, judge, config.objectives, prompts=prompts,
                           num_samples=config.bootstrap_samples, seed=config.seed, progress=config.progress,
                           matches=matches)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(render_judge_table(result))
    print(f"\nwrote {out}")
    return result
