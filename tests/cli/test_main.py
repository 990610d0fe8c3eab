"""The command line: usage, config parsing (YAML + flag overrides) for every shipped example config."""

from __future__ import annotations

from pathlib import Path

import pytest

from moalign.cli.main import parse_config, main

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "configs").glob("*.yaml"))


def test_usage_lists_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("synthetic bandit", "synthetic toy", "train mopo", "eval", "demo"):
        assert command in text
    assert main(["no-such-command"]) == 2


def _method_of(path: Path) -> str:
    """The registered method an example config is for: the longest method name its file name starts with."""
    from moalign.methods.registry import available_methods

    names = [n for n in available_methods() if path.stem.startswith(n + "_")]
    assert names, f"{path.name}: file name does not start with a registered method name"
    return max(names, key=len)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configsparse_config(path):
    from moalign.methods.registry import get_method

    method = _method_of(path)
    config = parse_config(get_method(method).config_class,
                          ["--config", str(path), "--max_steps", "3", "--bf16", "false", "--use_cpu", "true"],
                          f"moalign train {method}")
    assert config.max_steps == 3  # flag overrides the YAML
    assert config.model_name_or_path
    text = path.read_text()
    assert config.dataset_recipe or "objectives" in text or "reward_functions" in text


def test_unknown_yaml_field_is_an_error(tmp_path):
    from moalign.methods.mopo.config import MOPOConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: x\nno_such_field: 1\n")
    with pytest.raises((ValueError, SystemExit)):
        parse_config(MOPOConfig, ["--config", str(bad)], "moalign train mopo")


def test_demo_config_quick_tier():
    from moalign.experiments.demo import QUICK_OVERRIDES, DemoConfig

    config = parse_config(DemoConfig, ["--quick", "--out", "x"], "moalign demo")
    assert config.quick and config.out == "x"
    assert all(getattr(config, k) == v for k, v in QUICK_OVERRIDES.items())
