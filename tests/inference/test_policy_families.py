"""Weights checked against each method with clear errors; what each family offers (weight names, SCA between
heads, MODPO's nearest model with a warning, HaM's per-head weights); folders that are none of the layouts."""

from __future__ import annotations

import pytest
import torch

from moalign.inference import check_weights, load_policy, parse_weights
from moalign.methods.registry import methods_in_order
from tests.inference.conftest import save_multihead


def test_every_method_has_a_family_of_one_of_four_kinds():
    nine = {"mopo", "ham", "sca", "ric", "mo_odpo", "p_morl", "rewarded_soups", "odpo_soups", "modpo"}
    methods = methods_in_order()
    assert nine <= {name for name, m in methods.items() if m.family is not None}
    assert {methods[name].family_class().kind for name in nine} == {"heads", "soup", "conditioned", "per_weight"}


@pytest.mark.parametrize("text, expected", [("0.7,0.3", [0.7, 0.3]), ("0.7 0.3", [0.7, 0.3]), ([1, 0], [1.0, 0.0])])
def test_parse_weights(text, expected):
    assert parse_weights(text) == expected


@pytest.mark.parametrize("weights, message", [
    ([1.0], "got 1 weight(s) [1.0] but the mopo model with weights for helpful, short needs 2"),
    ([1.2, -0.2], "negative weight for short"),
    ([0.5, 0.6], "sum to 1.1"),
    ([float("nan"), 1.0], "non-finite"),
    ("0.5;0.5", "not a comma-separated list"),
])
def test_bad_weights_are_refused_with_the_reason(folders, weights, message):
    with pytest.raises(ValueError) as err:
        load_policy(folders["mopo_low_rank"]).check_weights(weights)
    assert message in str(err.value)


def test_conditioned_methods_accept_only_their_grid(folders):
    mo_odpo = load_policy(folders["mo_odpo"])
    assert mo_odpo.check_weights("0.3,0.7") == (0.3, 0.7)
    with pytest.raises(ValueError, match="1 decimal"):
        mo_odpo.check_weights([0.75, 0.25])
    assert load_policy(folders["ric"]).check_weights([0.75, 0.25]) == (0.75, 0.25)  # RiC maps any w to targets


def test_check_weights_never_renormalises():
    with pytest.raises(ValueError, match="simplex"):
        check_weights([2.0, 2.0], ["a", "b"], "soup")


def test_ham_weights_are_per_head(tmp_path, tiny_base):
    folder = save_multihead(tmp_path / "ham", tiny_base, ["policy_0", "policy_1", "policy_2"], "ham", 7)
    policy = load_policy(folder)
    assert policy.objectives == ["helpful", "short"] and policy.weight_names == ["policy_0", "policy_1", "policy_2"]
    with pytest.raises(ValueError, match="needs 3"):
        policy.check_weights([0.5, 0.5])
    assert "0.5 x policy_0, 0.5 x policy_2" in policy.describe([0.5, 0.0, 0.5])


def test_sca_selects_or_steers_between_trained_heads(folders):
    policy = load_policy(folders["sca"])
    assert policy.weight_names == ["helpful", "short"]
    family = policy.family
    assert family.coefficients((0.5, 0.5))[0] == [0.0, 1.0, 0.0]  # a trained vector: that head alone
    coefficients, note = family.coefficients((0.75, 0.25))  # between w_0.5_0.5 and w_1_0
    assert coefficients == pytest.approx([0.0, 0.5, 0.5]) and "w_0.5_0.5" in note and "w_1_0" in note
    assert policy.family.target((0.5, 0.5)).policy.kind == "head"


def test_modpo_uses_the_nearest_model_and_warns(folders):
    policy = load_policy(folders["modpo"])
    with pytest.warns(UserWarning, match=r"nearest one is used: .*model_w0\.8 \(trained for \[0\.8, 0\.2\]\)"):
        policy.generate(["hello you"], [0.6, 0.4], max_new_tokens=2)
    assert "model_w0.8" in policy.last_note
    with pytest.warns(UserWarning, match=r"model_w0\.2"):
        policy.generate(["hello you"], [0.3, 0.7], max_new_tokens=2)


def test_soup_and_modpo_describe_themselves(folders):
    assert "interpolated at [0.3, 0.7]" in load_policy(folders["soup"]).describe([0.3, 0.7])
    assert load_policy(folders["soup"]).kind == "soup"
    assert "trained for [0.8, 0.2]" in load_policy(folders["modpo"]).describe([0.8, 0.2])


def test_vertex_steering_with_forward_kl_is_exported_as_that_head(folders, tmp_path):
    """One head alone is exact for any divergence; mixing heads with forward KL is refused (no single model)."""
    policy = load_policy(folders["mopo_low_rank"])
    out = policy.export([1.0, 0.0], tmp_path / "vertex", divergence="forward_kl")
    with pytest.raises(ValueError, match="not a linear function of the logits"):
        policy.export([0.5, 0.5], tmp_path / "mix", divergence="forward_kl")
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(out)
    model = load_policy(folders["mopo_low_rank"]).family.model
    ids = torch.tensor([[4, 9, 13, 22]])
    with torch.no_grad(), model.head(0):
        expected = torch.log_softmax(model(input_ids=ids).logits, -1)
    with torch.no_grad():
        assert (torch.log_softmax(exported(input_ids=ids).logits, -1) - expected).abs().max() <= 1e-5


def test_unknown_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_policy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a folder trained by moalign"):
        load_policy(tmp_path / "empty")


def test_export_refuses_a_foreign_non_empty_folder(folders, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        load_policy(folders["soup"]).export([0.5, 0.5], tmp_path / "mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        load_policy(folders["soup"]).export([0.5, 0.5], tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
