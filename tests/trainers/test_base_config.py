"""Fields every method shares: checked once in MultiObjectiveConfig, inherited by each method's config."""

from __future__ import annotations

import pytest

from moalign.trainers.base_config import MultiObjectiveConfig
from moalign.methods.registry import available_methods


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_every_registered_config_shares_the_base_fields(name, tmp_path):
    config_class = available_methods()[name].config_class
    assert issubclass(config_class, MultiObjectiveConfig)
    config = config_class(output_dir=str(tmp_path), max_train_rows=3, report_to=[])
    assert config.max_train_rows == 3 and config.remove_unused_columns is False


@pytest.mark.parametrize("field, value", [("max_train_rows", 0), ("max_prompt_length", 0), ("head_type", "wide"),
                                          ("head_learning_rate", -1.0), ("lora_r", 0)])
def test_bad_shared_values_are_refused_with_the_field_name(field, value, tmp_path):
    with pytest.raises(ValueError, match=field):
        MultiObjectiveConfig(output_dir=str(tmp_path), report_to=[], **{field: value})
