"""train_model: scratch, full and LoRA training produce ordinary, reproducible HF folders."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from loopline.models.base import ModelSpecError
from loopline.models.encoding import PromptEncoder
from loopline.models.folder import MARKER_FILE, read_marker
from loopline.training.data import IGNORE_INDEX, Example, bucketed_batches, collate, read_split
from loopline.training.tokenizer import train_tokenizer
from loopline.training.trainer import REPORT_FILE, TrainReport, lr_factor, train_model
from tests.model.fixtures import settings_for
from tests.model.tickets import write_prepared

FAST = {"training": {"max_steps": 30, "batch_size": 8, "learning_rate": 0.006, "warmup_steps": 3}}
HF_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    MARKER_FILE,
    REPORT_FILE,
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"), 240, seed=11)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, prepared: Path) -> tuple[Path, TrainReport]:
    root = tmp_path_factory.mktemp("scratch")
    out = root / "model"
    report = train_model(settings_for(root / "project", **FAST), prepared, out)
    return out, report


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# -- scratch ------------------------------------------------------------------------------
def test_scratch_training_writes_an_ordinary_loadable_hf_folder(
    scratch: tuple[Path, TrainReport],
) -> None:
    out, report = scratch
    assert {p.name for p in out.iterdir()} >= HF_FILES
    assert _leftovers(out.parent) == []
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert report.trainable_parameters == report.parameters
    marker = read_marker(out)
    assert marker is not None and marker.mode == "scratch" and marker.max_seq_len == 128
    gen_cfg = json.loads((out / "generation_config.json").read_text())
    assert gen_cfg["eos_token_id"] == model.config.eos_token_id


def test_report_is_json_and_the_loss_goes_down(scratch: tuple[Path, TrainReport]) -> None:
    out, report = scratch
    assert report.mode == "scratch" and report.steps == 30 and report.seed == 42
    saved = TrainReport.model_validate_json((out / REPORT_FILE).read_text())
    assert saved == report
    json.dumps(report.model_dump(mode="json"))
    first_loss = report.loss_curve[0][1]
    assert report.final_loss < 0.6 * first_loss
    assert report.val_loss is not None and report.val_loss < 0.6 * first_loss
    assert report.loss_curve[-1][0] == 30 and len(report.loss_curve) <= 50
    assert report.target_tokens_seen < report.tokens_seen
    assert report.tokens_per_s > 0 and report.wall_seconds > 0
    assert report.torch_version == torch.__version__


def test_same_seed_gives_identical_weights_and_another_seed_does_not(
    tmp_path: Path, prepared: Path
) -> None:
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        training = {**FAST["training"], "max_steps": 4, "seed": seed}
        settings = settings_for(tmp_path / name, training=training)
        train_model(settings, prepared, tmp_path / name / "model")
        runs[name] = _weights(tmp_path / name / "model")
    assert runs["a"].keys() == runs["b"].keys()
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_a_crash_while_saving_leaves_the_previous_folder_untouched(
    tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path / "p", **{"training": {**FAST["training"], "max_steps": 2}})
    out = tmp_path / "model"
    train_model(settings, prepared, out)
    before = _weights(out)

    def boom(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("loopline.training.trainer.write_marker", boom)
    retrain = settings_for(tmp_path / "p", **{"training": {"max_steps": 3, "seed": 9}})
    with pytest.raises(OSError, match="disk full"):
        train_model(retrain, prepared, out)
    after = _weights(out)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _leftovers(tmp_path) == []
    with pytest.raises(OSError, match="disk full"):
        train_model(retrain, prepared, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_max_seq_len_beyond_the_model_context_is_refused(tmp_path: Path, prepared: Path) -> None:
    settings = settings_for(
        tmp_path / "p",
        model={"tiny": {"max_position_embeddings": 64}},
        training={"max_seq_len": 128},
    )
    with pytest.raises(ValueError, match="max_position_embeddings"):
        train_model(settings, prepared, tmp_path / "m")


# -- fine-tuning --------------------------------------------------------------------------
def test_lora_trains_only_adapters_and_saves_a_merged_ordinary_folder(
    tmp_path: Path, prepared: Path, scratch: tuple[Path, TrainReport]
) -> None:
    base, _ = scratch
    settings = settings_for(
        tmp_path / "p",
        training={
            **FAST["training"],
            "mode": "lora",
            "base_model": f"hf:{base}",
            "max_steps": 8,
            "learning_rate": 0.01,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        },
    )
    out = tmp_path / "lora"
    report = train_model(settings, prepared, out)
    # q_proj and v_proj are 64x64 in both layers: r * (in + out) adapter weights each.
    assert report.trainable_parameters == 2 * 2 * 4 * (64 + 64)
    assert report.parameters == _scratch_params(base)
    before, after = _weights(base), _weights(out)
    assert before.keys() == after.keys()  # merged: no lora_A/lora_B left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)
    marker = read_marker(out)
    assert marker is not None and marker.mode == "lora" and marker.base_model == f"hf:{base}"
    assert isinstance(AutoModelForCausalLM.from_pretrained(out), LlamaForCausalLM)


def test_full_fine_tuning_updates_every_weight_matrix(
    tmp_path: Path, prepared: Path, scratch: tuple[Path, TrainReport]
) -> None:
    base, _ = scratch
    settings = settings_for(
        tmp_path / "p",
        training={**FAST["training"], "mode": "full", "base_model": str(base), "max_steps": 3},
    )
    report = train_model(settings, prepared, tmp_path / "full")
    assert report.trainable_parameters == report.parameters == _scratch_params(base)
    before, after = _weights(base), _weights(tmp_path / "full")
    assert all(not torch.equal(before[k], after[k]) for k in before if before[k].ndim == 2)
    assert {p.name for p in (tmp_path / "full").iterdir()} >= HF_FILES


def test_a_missing_base_model_is_a_clear_error(tmp_path: Path, prepared: Path) -> None:
    settings = settings_for(
        tmp_path / "p", training={"mode": "lora", "base_model": f"hf:{tmp_path / 'nope'}"}
    )
    with pytest.raises(ModelSpecError, match="not a local model folder"):
        train_model(settings, prepared, tmp_path / "m")


def _scratch_params(folder: Path) -> int:
    return sum(t.numel() for t in _weights(folder).values())


# -- pieces of the loop -------------------------------------------------------------------
def test_learning_rate_warms_up_then_decays_by_cosine() -> None:
    factors = [lr_factor(s, 10, 110) for s in range(110)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55)
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_collate_masks_prompt_and_padding() -> None:
    batch = collate([Example([5, 6, 7, 8], 2), Example([5, 9, 10], 1)], pad_id=1)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [5, 9, 10, 1]]
    m = IGNORE_INDEX
    assert batch.labels.tolist() == [[m, m, 7, 8], [m, 9, 10, m]]
    assert (batch.n_tokens, batch.n_target) == (7, 4)


def test_bucketed_batches_cover_each_example_once_per_epoch_deterministically() -> None:
    rng = random.Random(0)
    examples = [Example([0] * rng.randint(5, 80), 1) for _ in range(100)]
    stream = bucketed_batches(examples, 10, random.Random(3), pool_batches=5)
    epoch = [next(stream) for _ in range(10)]
    assert sorted(id(e) for b in epoch for e in b) == sorted(id(e) for e in examples)
    again = bucketed_batches(examples, 10, random.Random(3), pool_batches=5)
    assert [[id(e) for e in b] for b in epoch] == [[id(e) for e in next(again)] for _ in range(10)]
    spread = sum(max(len(e.input_ids) for e in b) - min(len(e.input_ids) for e in b) for b in epoch)
    assert spread < 0.5 * 10 * 75  # grouped by length: far less padding than random batches


def test_read_split_names_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"prompt": "a", "intent": "b", "reply": "c"}) + "\n" + '{"prompt": "a"}\n'
    )
    with pytest.raises(ValueError, match=r"train\.jsonl:2: .*intent"):
        read_split(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"val\.jsonl"):
        read_split(tmp_path, "val")


def test_examples_are_encoded_with_the_shared_prompt_encoder(prepared: Path) -> None:
    rows = read_split(prepared, "train")[:3]
    tok = train_tokenizer(
        (r["prompt"] + r["reply"] for r in read_split(prepared, "train")), vocab_size=400
    )
    enc = PromptEncoder(tok)
    from loopline.training.data import encode_rows

    encoded = encode_rows(rows, enc, 128)
    assert encoded[0].input_ids[: encoded[0].n_prompt] == enc.prompt_ids(rows[0]["prompt"])
