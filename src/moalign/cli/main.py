"""The ``moalign`` command line.

    moalign synthetic bandit [--out DIR] [--seeds N] [--quick] [...BanditConfig fields]
    moalign synthetic toy --set A|B [--out DIR] [--seeds N] [--quick] [...ToyConfig fields]
    moalign train <method> --config FILE.yaml [...config fields override the YAML]
        e.g. moalign train mopo; `moalign train` alone lists the registered methods
    moalign eval --model DIR [...EvalRunConfig fields]
    moalign demo [--quick] [--out DIR]
    moalign compare --task toy-A|toy-B|demo [--methods ...] [--budget N] [--quick] [--out DIR]
    moalign judge --compare DIR --methods X,Y [--judge-model smollm2] [--objectives ...] [--out FILE.json]
    moalign rescore --compare DIR --reward_functions r1 r2 ... [--out FILE.json]   (other scorers, no retraining)
    moalign label --data FILE --rewards r1 r2 ... [--pairs] --out FILE   (score your own rows; LabelConfig fields)
    moalign generate --model DIR --weights 0.7,0.3 --prompt TEXT | --prompts FILE.jsonl [--out FILE.jsonl]
    moalign export --model DIR --weights 0.7,0.3 --out DIR2   (a plain transformers model; docs/use_your_model.md)
    moalign serve --model DIR [--host 127.0.0.1] [--port 8000]   (OpenAI-compatible API + steering playground)

Every command's options are the fields of a config dataclass (help text from
the fields); ``--config FILE.yaml`` loads them from YAML and flags given on
the command line override the file (TRL's ``TrlParser``).

Errors: bad input (dataset, config, paths, model names) prints
``moalign <command>: error: <message>`` and exits with 2; any other failure
prints ``moalign <command>: internal error: ...`` and exits with 1; ``--debug``
anywhere on the command line shows the full traceback instead
(:mod:`moalign.cli.errors`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

USAGE = __doc__


def parse_config(config_cls: type, argv: list[str], prog: str) -> Any:
    """Parse ``argv`` into ``config_cls`` (YAML via --config, flags override); used by the CLI and benchmarks."""
    from trl import TrlParser

    check_config_file(config_cls, argv)
    parser = TrlParser(dataclass_types=[config_cls], prog=prog)
    config, unused = parser.parse_args_and_config(args=argv, return_remaining_strings=True)
    if unused:
        raise ValueError(_unknown_options_message(parser, unused))
    return config


def _unknown_options_message(parser: Any, unused: list[str]) -> str:
    """``unknown option(s) --x (did you mean --y?)`` for command-line words no option took."""
    import difflib

    known = sorted(s for action in parser._actions for s in action.option_strings if s.startswith("--"))
    flags = [word for word in unused if word.startswith("-")]
    if not flags:
        return f"unexpected argument(s) {' '.join(unused)} (options are --name value; see --help)"
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag.split("=", 1)[0], known, n=1)
        hints.append(flag + (f" (did you mean {close[0]}?)" if close else ""))
    return f"unknown option(s) {', '.join(hints)}; see --help"


def check_config_file(config_cls: type, argv: list[str]) -> None:
    """Check the YAML file named by ``--config`` in ``argv`` before TRL reads it, for errors that name the file.

    Raises ``ValueError`` for a missing path after ``--config``, a file that is
    not a YAML mapping, or keys that are not fields of ``config_cls`` (with the
    closest field names); ``FileNotFoundError`` for a missing file.  Values are
    checked later by argparse and the dataclass.
    """
    import dataclasses
    import difflib

    import yaml

    if "--config" not in argv:
        return
    index = argv.index("--config")
    if index + 1 >= len(argv) or argv[index + 1].startswith("--"):
        raise ValueError("--config needs the path of a YAML file")
    path = argv[index + 1]
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path}: no such file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path}: not valid YAML: {err}") from None
    if not isinstance(content, dict):
        raise ValueError(f"config file {path}: expected a YAML mapping of option names to values, "
                         f"got {type(content).__name__}")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = [str(key) for key in content if key not in fields and key != "env"]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(fields), n=1)
            hints.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise ValueError(f"config file {path}: unknown option(s) {', '.join(hints)}; "
                         f"not fields of {config_cls.__name__} (see --help)")


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
    from moalign.experiments.toy import format_table
    from moalign.experiments.toy_weighted_likelihood import format_weighted_likelihood_table

    print(format_table(result))
    if "weighted_likelihood" in result:
        print("\n" + format_weighted_likelihood_table(result))


def _train(argv: list[str]) -> int:
    from moalign.methods.registry import available_methods

    methods = available_methods()
    if not argv or argv[0] not in methods:
        lines = ["usage: moalign train <method> --config FILE.yaml [options]   (--help of a method lists them)",
                 "", "methods:"]
        lines += [f"  {name:<10} {method.description}" for name, method in methods.items()]
        if argv and argv[0] not in ("-h", "--help"):
            lines.insert(0, f"moalign train: unknown method {argv[0]!r}")
        print("\n".join(lines), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from moalign.trainers.run import end_distributed, train_method

    name = argv[0]
    config = parse_config(methods[name].config_class, argv[1:], f"moalign train {name}")
    train_method(name, config)
    end_distributed()  # under torchrun: every rank leaves the group before exit
    return 0


def _eval(argv: list[str]) -> int:
    from moalign.eval.run import EvalRunConfig, run_eval

    run_eval(parse_config(EvalRunConfig, argv, "moalign eval"))
    return 0


def _demo(argv: list[str]) -> int:
    from moalign.experiments.demo import DemoConfig, run_demo

    run_demo(parse_config(DemoConfig, argv, "moalign demo"))
    return 0


def _compare(argv: list[str]) -> int:
    from moalign.experiments.compare import CompareConfig, run_compare

    config = parse_config(CompareConfig, argv, "moalign compare")
    run_compare(config)
    print(f"wrote {config.out}/compare.json, report.md and fronts.png")
    return 0


def _label(argv: list[str]) -> int:
    from moalign.cli.label import LabelConfig, run_label

    run_label(parse_config(LabelConfig, argv, "moalign label"))
    return 0


def _judge(argv: list[str]) -> int:
    from moalign.experiments.judge_compare import JudgeRunConfig, run_judge

    run_judge(parse_config(JudgeRunConfig, argv, "moalign judge"))
    return 0


def _rescore(argv: list[str]) -> int:
    from moalign.experiments.compare_rescore import RescoreConfig, run_rescore

    run_rescore(parse_config(RescoreConfig, argv, "moalign rescore"))
    return 0


def _generate(argv: list[str]) -> int:
    from moalign.inference.cli import GenerateConfig, run_generate

    run_generate(parse_config(GenerateConfig, argv, "moalign generate"))
    return 0


def _export(argv: list[str]) -> int:
    from moalign.inference.cli import ExportConfig, run_export

    run_export(parse_config(ExportConfig, argv, "moalign export"))
    return 0


def _serve(argv: list[str]) -> int:
    from moalign.inference.server import ServeConfig, run_serve

    run_serve(parse_config(ServeConfig, argv, "moalign serve"))
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "synthetic": _synthetic,
    "train": _train,
    "eval": _eval,
    "demo": _demo,
    "compare": _compare,
    "judge": _judge,
    "rescore": _rescore,
    "label": _label,
    "generate": _generate,
    "export": _export,
    "serve": _serve,
}


def command_prog(argv: list[str]) -> str:
    """How errors name the command: ``moalign train mopo``, ``moalign eval``, ..."""
    words = ["moalign", *argv[:1]]
    if argv and argv[0] in ("synthetic", "train") and len(argv) > 1 and not argv[1].startswith("-"):
        words.append(argv[1])
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default ``sys.argv[1:]``); returns the exit code (see the module docstring)."""
    from moalign.runtime import configure_cpu_threads; configure_cpu_threads()  # noqa: E702  before torch loads
    from moalign.cli.errors import report_error, pop_debug_flag

    argv, debug = pop_debug_flag(list(sys.argv[1:] if argv is None else argv))
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        if argv:
            print(f"moalign: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if debug:
        return COMMANDS[argv[0]](argv[1:])
    try:
        return COMMANDS[argv[0]](argv[1:])
    except KeyboardInterrupt:
        print(f"{command_prog(argv)}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- every failure is reported; --debug shows the traceback
        return report_error(command_prog(argv), err)


if __name__ == "__main__":
    sys.exit(main())
