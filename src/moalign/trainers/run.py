"""``moalign train <method>``: build the multi-head model, load the data, train, save — for any registered method."""

from __future__ import annotations

from typing import Any

from moalign.trainers.base_config import MultiObjectiveConfig


def seed_training(config: MultiObjectiveConfig) -> None:
    """Seed Python, numpy and torch from ``config.seed`` as ``transformers.Trainer`` does, but *before* the model
    is built.

    The Trainer seeds in its constructor, after the model exists: without this, LoRA's initialisation (and any
    head drawn from torch's global generator) would depend on whatever ran before, and two runs of
    ``moalign train <method> --seed S`` would differ. ``full_determinism`` also selects deterministic kernels.
    """
    from transformers import enable_full_determinism, set_seed

    if getattr(config, "full_determinism", False):
        enable_full_determinism(config.seed)
    else:
        set_seed(config.seed)


def build_multihead_model(config: MultiObjectiveConfig, head_names: list[str], base_model: Any = None
                          ) -> tuple[Any, Any]:
    """``(MultiHeadCausalLM, tokenizer)`` for ``config.model_name_or_path`` with one head per name."""
    from peft import LoraConfig

    from moalign.models import MultiHeadCausalLM, MultiHeadConfig, load_base_model, load_tokenizer

    if config.model_name_or_path is None and base_model is None:
        raise ValueError("set model_name_or_path (a hub id, a local directory, or 'smollm2')")
    tokenizer = load_tokenizer(config.model_name_or_path)
    if base_model is None:
        base_model = load_base_model(config.model_name_or_path)
    lora = None
    if config.use_lora:
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=config.lora_target_modules)
    heads = MultiHeadConfig(num_heads=len(head_names), head_names=list(head_names), head_type=config.head_type,
                            head_rank=config.head_rank, seed=config.seed)
    return MultiHeadCausalLM(base_model, heads, lora_config=lora), tokenizer


def load_training_data(config: MultiObjectiveConfig, kind: str = "pairwise") -> Any:
    """The multi-objective dataset named by ``dataset_path`` or ``dataset_recipe`` (rows of ``kind``).

    A local ``dataset_path`` with ``label_rewards`` is labelled first (:func:`load_local_data`).
    """
    if kind == "prompts":  # online methods: prompts only, objectives named by the reward functions
        from moalign.data.prompt_data import load_prompt_data

        if config.dataset_path is None and config.dataset_recipe is None:
            raise ValueError("set dataset_path (a file or saved dataset with a 'prompt' column) or dataset_recipe")
        if config.label_rewards:
            raise ValueError("label_rewards labels offline data; this method samples its own completions and scores "
                             "them with reward_functions: set reward_functions instead")
        return load_prompt_data(config, config.dataset_path, config.max_train_rows)

    if config.dataset_recipe is not None:
        from moalign.data import hub
        from moalign.rewards.registry import resolve_reward_functions

        rewards = {fn.name: fn for fn in resolve_reward_functions(config.label_rewards or [])}
        data, report = hub.load_recipe(config.dataset_recipe, config.dataset_split, reward_functions=rewards or None)
        print(report)
    elif config.dataset_path is not None:
        data = load_local_data(config, config.dataset_path, kind, config.objectives)
    else:
        raise ValueError("set dataset_path (a JSONL/Parquet/CSV file or saved dataset) or dataset_recipe")
    if config.max_train_rows is not None:
        data.dataset = data.dataset.select(range(min(config.max_train_rows, len(data.dataset))))
    return data


def load_local_data(config: MultiObjectiveConfig, path: str, kind: str, objectives: list[str] | None) -> Any:
    """The file or saved folder ``path`` as a dataset of ``kind``; with ``config.label_rewards``, labelled first.

    Labelling is ``moalign label``'s (:func:`moalign.data.label.label_file`, its default options): for a pairwise
    method, pair rows are labelled as they are and ``prompt``/``completion`` rows are paired per prompt; for a
    pointwise one, completion rows get ``scores`` and pair rows are labelled, then split into scored completions
    (:func:`moalign.data.convert.pairwise_to_pointwise`). The objectives are the rewards' names.
    """
    from moalign.data import load_multi_objective

    if not config.label_rewards:
        return load_multi_objective(path, objectives=objectives, kind=kind)
    from moalign.data.label import label_file
    from moalign.rewards.registry import resolve_rewards

    reward_fns = resolve_rewards(list(config.label_rewards))
    names = [fn.name for fn in reward_fns]
    if config.objectives is not None and list(config.objectives) != names:
        raise ValueError(f"objectives={list(config.objectives)} but label_rewards names the objectives {names}: "
                         "leave objectives unset (the rewards name them) or rename a reward with name=spec")
    try:
        data, report = label_file(path, reward_fns, pairs=True if kind == "pairwise" else None)
    except ValueError as err:
        raise ValueError(f"{err}\n--label_rewards labels with the defaults of `moalign label`; for its options "
                         f"(--overwrite, --unpaired, --duplicates, --label_mode) run `moalign label --data {path} "
                         "--rewards ... --out FILE` and train on FILE") from err
    if report is not None:
        print(report)
    if kind == "pointwise" and data.kind == "pairwise":
        from moalign.data.convert import pairwise_to_pointwise

        data, report = pairwise_to_pointwise(data)
        print(report)
    return data


def load_eval_data(config: MultiObjectiveConfig, objectives: list[str], kind: str = "pairwise") -> Any:
    """The evaluation dataset of ``eval_dataset_path`` (same objectives as the training data), or None."""
    if config.eval_dataset_path is None:
        return None
    if kind == "prompts":
        from moalign.data.prompt_data import load_prompt_data

        return load_prompt_data(config, config.eval_dataset_path)
    data = load_local_data(config, config.eval_dataset_path, kind, config.objectives or objectives)
    if list(data.objectives) != list(objectives):
        raise ValueError(f"{config.eval_dataset_path}: objectives {list(data.objectives)} differ from the training "
                         f"data's {list(objectives)}")
    return data


def train_method(name: str, config: MultiObjectiveConfig, base_model: Any = None) -> Any:
    """Train the registered method ``name`` as configured and save the final model to ``config.output_dir``.

    Returns the trainer. Resumes from ``config.resume_from_checkpoint`` when set.
    """
    from moalign.methods.registry import get_method

    trainer_class = get_method(name).trainer_class
    seed_training(config)  # before the model (LoRA init) and the data: the same seed gives the same run
    data = load_training_data(config, kind=trainer_class.data_kind)
    eval_data = load_eval_data(config, list(data.objectives), kind=trainer_class.data_kind)
    if getattr(trainer_class, "builds_own_models", False):  # e.g. soups: each specialist loads a fresh base
        from moalign.models import load_tokenizer

        model, tokenizer = None, load_tokenizer(config.model_name_or_path)
    else:
        heads = trainer_class.head_names_for(config, list(data.objectives))
        model, tokenizer = build_multihead_model(config, heads, base_model)
    # a trainer whose runs are runs of other registered methods (ODPO Soups' specialists) gets this runner
    runner = {"train_method": train_method} if getattr(trainer_class, "runs_methods", False) else {}
    trainer = trainer_class(model=model, args=config, train_dataset=data, eval_dataset=eval_data,
                            processing_class=tokenizer, **runner)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    return trainer


def end_distributed() -> None:
    """Wait for every process, then tear down the process group, if one was started (``torchrun``).

    Without this, the group's communication threads are destroyed by the interpreter's exit; on a loaded machine
    that can abort a rank ("terminate called without an active exception") after its work is saved. A no-op in a
    single process.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train_mopo(config: Any) -> Any:
    """Train MOPO (``train_method("mopo", config)``)."""
    return train_method("mopo", config)
