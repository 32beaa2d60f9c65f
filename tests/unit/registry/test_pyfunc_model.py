"""The pyfunc wrapper on its own, with a stub ``loopline.models.base`` whose generator follows
the real ``Generator`` protocol (checked below). The real ``load_generator`` with a trained
tiny model is exercised in tests/integration/test_mlflow_registry.py."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pandas as pd
import pytest

from loopline.registry.pyfunc_model import LooplinePyfuncModel, _prompts, log_time_check


@dataclass
class Output:
    text: str


class StubGenerator:
    name = "stub"

    def __init__(self, path: str, *, as_objects: bool = False, drop: bool = False) -> None:
        self.path = path
        self.as_objects = as_objects
        self.drop = drop
        self.calls: list[tuple[list[str], int, float, int | None]] = []

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Any]:
        self.calls.append((list(prompts), max_new_tokens, temperature, seed))
        texts = [f"reply to {p}" for p in prompts]
        if self.drop:
            texts = texts[:-1]
        return [Output(t) for t in texts] if self.as_objects else texts


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state: dict[str, Any] = {"kwargs": {}, "loaded": []}
    module = types.ModuleType("loopline.models.base")

    def load_generator(path: str) -> StubGenerator:
        gen = StubGenerator(path, **state["kwargs"])
        state["loaded"].append(gen)
        return gen

    module.load_generator = load_generator  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "loopline.models.base", module)
    return state


def loaded_model(path: str = "/models/hf", max_new_tokens: int = 64) -> LooplinePyfuncModel:
    model = LooplinePyfuncModel(max_new_tokens)
    model.load_context(types.SimpleNamespace(artifacts={"hf_model": path}))
    return model


@pytest.mark.parametrize(
    ("model_input", "expected"),
    [
        (pd.DataFrame({"prompt": ["a", "b"]}), ["a", "b"]),
        ("single", ["single"]),
        (["a", "b"], ["a", "b"]),
        ({"prompt": ["a"]}, ["a"]),
        ({"prompt": "a"}, ["a"]),
        ([{"prompt": "a"}, {"prompt": "b"}], ["a", "b"]),
    ],
)
def test_prompts_from_inputs(model_input: Any, expected: list[str]) -> None:
    assert _prompts(model_input) == expected


def test_prompts_need_a_prompt_column() -> None:
    with pytest.raises(ValueError, match="'prompt' column"):
        _prompts(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ValueError, match="'prompt' key"):
        _prompts({"text": "a"})


def test_stub_follows_the_real_generator_protocol() -> None:
    from loopline.models.base import Generator

    assert isinstance(StubGenerator("/x"), Generator)


def test_generator_is_loaded_lazily_once_from_the_artifact_path(stub: dict[str, Any]) -> None:
    model = loaded_model("/models/hf", max_new_tokens=48)
    assert stub["loaded"] == []  # loading the MLflow model does not load the generator
    out1 = model.predict(None, pd.DataFrame({"prompt": ["hi", "there"]}))
    out2 = model.predict(
        None, ["again"], params={"max_new_tokens": 12, "temperature": 0.7, "seed": 3}
    )
    out3 = model.predict(None, ["x"], params={"max_new_tokens": None, "seed": None})
    assert out1 == ["reply to hi", "reply to there"]
    assert out2 == ["reply to again"] and out3 == ["reply to x"]
    (gen,) = stub["loaded"]
    assert gen.path == "/models/hf"
    assert gen.calls == [
        (["hi", "there"], 48, 0.0, None),  # the default given at log time
        (["again"], 12, 0.7, 3),
        (["x"], 48, 0.0, None),
    ]


def test_outputs_with_text_attribute(stub: dict[str, Any]) -> None:
    stub["kwargs"] = {"as_objects": True}
    assert loaded_model().predict(None, ["x"]) == ["reply to x"]


def test_output_count_mismatch_is_an_error(stub: dict[str, Any]) -> None:
    stub["kwargs"] = {"drop": True}
    with pytest.raises(RuntimeError, match="1 outputs for 2 prompts"):
        loaded_model().predict(None, ["a", "b"])


def test_empty_input_does_not_load_the_model(stub: dict[str, Any]) -> None:
    assert loaded_model().predict(None, []) == []
    assert stub["loaded"] == []


def test_missing_artifact_and_missing_context() -> None:
    with pytest.raises(KeyError, match="hf_model"):
        LooplinePyfuncModel().load_context(types.SimpleNamespace(artifacts={}))
    with pytest.raises(RuntimeError, match="load_context"):
        LooplinePyfuncModel().predict(None, ["a"])


def test_pickling_never_carries_a_loaded_generator(stub: dict[str, Any]) -> None:
    model = loaded_model()
    model.predict(None, ["a"])
    clone = cloudpickle.loads(cloudpickle.dumps(model))
    assert isinstance(clone, LooplinePyfuncModel)
    assert clone._generator is None and clone._path is None
    assert clone.max_new_tokens == 64


def test_max_new_tokens_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        LooplinePyfuncModel(0)


def test_log_time_check_answers_without_loading_the_generator(stub: dict[str, Any]) -> None:
    model = loaded_model()
    with log_time_check():
        assert model.predict(None, pd.DataFrame({"prompt": ["a", "b"]})) == ["", ""]
        with pytest.raises(ValueError, match="'prompt' column"):  # input is still checked
            model.predict(None, pd.DataFrame({"text": ["a"]}))
    assert stub["loaded"] == []
    assert model.predict(None, ["a"]) == ["reply to a"]  # outside: the real path
