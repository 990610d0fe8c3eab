"""The ``moalign`` command line.

    moalign synthetic bandit [--out DIR] [--seeds N] [--quick] [...BanditConfig fields]
    moalign synthetic toy --set A|B [--out DIR] [--seeds N] [--quick] [...ToyConfig fields]
    moalign train mopo --config FILE.yaml [...MOPOConfig fields override the YAML]
    moalign eval --model DIR [...EvalRunConfig fields]
    moalign demo [--quick] [--out DIR]

Every command's options are the fields of a config dataclass (help text from
the fields); ``--config FILE.yaml`` loads them from YAML and flags given on
the command line override the file (TRL's ``TrlParser``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

USAGE = __doc__


def parse_config(config_cls: type, argv: list[str], prog: str) -> Any:
    """Parse ``argv`` into ``config_cls`` (YAML via --config, flags override); used by the CLI and benchmarks."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types=[config_cls], prog=prog)
    (config,) = parser.parse_args_and_config(args=argv)
    return config


def parse_config_and_progress(config_cls: type, argv: list[str] | None, prog: str) -> tuple[Any, bool]:
    """:func:`parse_config` plus a ``--no-progress`` flag (for benchmark scripts): ``(config, show_progress)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    progress = "--no-progress" not in argv
    return parse_config(config_cls, [a for a in argv if a != "--no-progress"], prog), progress


def _synthetic(argv: list[str]) -> int:
    if not argv or argv[0] not in ("bandit", "toy"):
        print("usage: moalign synthetic {bandit,toy} [options]   (see --help of each)", file=sys.stderr)
        return 2
    which, rest = argv[0], argv[1:]
    if which == "bandit":
        from moalign.experiments.bandit import BanditConfig
        from moalign.experiments.bandit_result import run_bandit

        config = parse_config(BanditConfig, rest, "moalign synthetic bandit")
        run_bandit(config)
        print(f"wrote {config.out}/bandit.json and {config.out}/bandit.png")
    else:
        from moalign.experiments.toy import ToyConfig, run_toy

        config = parse_config(ToyConfig, rest, "moalign synthetic toy")
        result = run_toy(config)
        _print_toy(result)
        print(f"wrote results to {config.out}")
    return 0


def _print_toy(result: dict) -> None:
    ratios = result.get("hv_ratio") or {}
    if ratios:
        width = max(len(m) for m in ratios)
        print(f"{'method':<{width}}  HV / HV(true front)")
        for method, ratio in ratios.items():
            print(f"{method:<{width}}  {ratio:.4f}")


def _train(argv: list[str]) -> int:
    if not argv or argv[0] != "mopo":
        print("usage: moalign train mopo --config FILE.yaml [options]", file=sys.stderr)
        return 2
    from moalign.trainers.mopo_config import MOPOConfig
    from moalign.trainers.run import train_mopo

    config = parse_config(MOPOConfig, argv[1:], "moalign train mopo")
    train_mopo(config)
    return 0


def _eval(argv: list[str]) -> int:
    from moalign.eval.run import EvalRunConfig, run_eval

    run_eval(parse_config(EvalRunConfig, argv, "moalign eval"))
    return 0


def _demo(argv: list[str]) -> int:
    from moalign.experiments.demo import DemoConfig, run_demo

    run_demo(parse_config(DemoConfig, argv, "moalign demo"))
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "synthetic": _synthetic,
    "train": _train,
    "eval": _eval,
    "demo": _demo,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(USAGE)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
