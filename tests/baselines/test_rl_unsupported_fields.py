"""The GRPO-trained baselines (P-MORL, Rewarded Soups) refuse inherited fields they cannot honour, naming them."""

from __future__ import annotations

import pytest

from moalign.trainers.base_config import MultiObjectiveConfig
from moalign.methods.p_morl.config import PMORLConfig
from moalign.methods.rewarded_soups.config import RewardedSoupsConfig
from moalign.trainers.rl_common import UNSUPPORTED_FIELDS

COMMON = dict(reward_functions=["positivity", "conciseness"], use_cpu=True, report_to=[])
NON_DEFAULT = {"head_type": "full", "head_rank": 4, "head_learning_rate": 1e-3, "use_lora": False,
               "length_normalize": True, "precompute_ref_log_probs": True, "reuse_frozen_backbone": False,
               "max_prompt_length": 128, "eval_dataset_path": "eval.jsonl", "objectives": ["a", "b"]}


def test_every_refused_field_is_inherited_and_has_a_non_default_here():
    inherited = set(MultiObjectiveConfig.__dataclass_fields__)
    assert set(UNSUPPORTED_FIELDS) <= inherited and set(NON_DEFAULT) == set(UNSUPPORTED_FIELDS)


@pytest.mark.parametrize("config_class", [PMORLConfig, RewardedSoupsConfig])
@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_non_default_inherited_field_is_refused_with_its_name_and_why(tmp_path, config_class, name):
    with pytest.raises(ValueError, match=rf"{config_class.__name__} cannot honour {name}=") as err:
        config_class(output_dir=str(tmp_path), **COMMON, **{name: NON_DEFAULT[name]})
    assert UNSUPPORTED_FIELDS[name] in str(err.value) and "Leave" in str(err.value)


@pytest.mark.parametrize("config_class", [PMORLConfig, RewardedSoupsConfig])
def test_defaults_and_honoured_fields_pass(tmp_path, config_class):
    config = config_class(output_dir=str(tmp_path), **COMMON, lora_r=4, max_completion_length=16,
                          head_type="low_rank")  # the default value, written out, is no error
    assert config.lora_r == 4 and config.max_completion_length == 16
