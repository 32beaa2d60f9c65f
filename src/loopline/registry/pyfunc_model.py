"""The MLflow pyfunc wrapper around a Loopline Hugging Face model folder.

The folder travels as the pyfunc artifact ``hf_model``. Loading the MLflow model is cheap: the
generator is created on the first ``predict`` through ``loopline.models.base.load_generator``
(imported lazily, so registering a model never needs torch).

It relies on the ``Generator`` protocol of ``loopline.models.base``::

    load_generator(spec: str) -> Generator          # a folder path is a valid spec
    generator.generate(prompts, *, max_new_tokens: int, temperature: float = 0.0,
                       seed: int | None = None) -> list[Generation]   # Generation.text

Prompts are passed as the customer wrote them; the generator applies the prompt format.
Params (MLflow inference params): ``max_new_tokens`` (default: the value given at log time,
``evaluation.max_new_tokens``), ``temperature`` and ``seed``.

When MLflow logs the model it loads it and predicts the input example to validate it. Inside
``log_time_check()`` (which the registry uses around ``log_model``) ``predict`` still parses the
input but answers with empty strings instead of loading the generator: registering a model must
not import torch and load the weights into the registering process (measured: +12 s for the
first registration in a process).

The class is pickled by reference, so the environment that loads the model needs the
``loopline`` package installed (the serving image does).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

ARTIFACT_KEY = "hf_model"
PROMPT_COLUMN = "prompt"
DEFAULT_MAX_NEW_TOKENS = 64

_LOG_TIME_CHECK: ContextVar[bool] = ContextVar("loopline_pyfunc_log_time_check", default=False)


@contextlib.contextmanager
def log_time_check() -> Iterator[None]:
    """While active (in this thread/context), ``predict`` does not load or run the generator."""
    token = _LOG_TIME_CHECK.set(True)
    try:
        yield
    finally:
        _LOG_TIME_CHECK.reset(token)


def _prompts(model_input: Any) -> list[str]:
    """Prompts from a DataFrame with a ``prompt`` column, a dict, a list or a str."""
    if isinstance(model_input, str):
        return [model_input]
    columns = getattr(model_input, "columns", None)
    if columns is not None:  # a pandas DataFrame
        if PROMPT_COLUMN not in columns:
            raise ValueError(f"model input needs a {PROMPT_COLUMN!r} column, got {list(columns)!r}")
        return [str(p) for p in model_input[PROMPT_COLUMN].tolist()]
    if isinstance(model_input, Mapping):
        value = model_input.get(PROMPT_COLUMN)
        if value is None:
            raise ValueError(f"model input needs a {PROMPT_COLUMN!r} key")
        return [value] if isinstance(value, str) else [str(v) for v in value]
    if isinstance(model_input, Iterable):
        out: list[str] = []
        for item in model_input:
            if isinstance(item, Mapping):
                out.append(str(item[PROMPT_COLUMN]))
            else:
                out.append(str(item))
        return out
    raise TypeError(f"unsupported model input type {type(model_input).__name__}")


def _text(item: Any) -> str:
    text = getattr(item, "text", item)
    return text if isinstance(text, str) else str(text)


class LooplinePyfuncModel(PythonModel):
    """Generates a reply for each prompt with the wrapped Hugging Face model folder."""

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be ≥ 1, got {max_new_tokens}")
        self.max_new_tokens = max_new_tokens
        self._reset()

    def _reset(self) -> None:
        self._path: str | None = None
        self._generator: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle a loaded generator or a lock: only the defaults travel with the model.
        return {"max_new_tokens": self.max_new_tokens}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.max_new_tokens = int(state.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self._reset()

    def load_context(self, context: Any) -> None:
        artifacts = getattr(context, "artifacts", None) or {}
        if ARTIFACT_KEY not in artifacts:
            raise KeyError(f"the MLflow model has no {ARTIFACT_KEY!r} artifact")
        self._path = str(artifacts[ARTIFACT_KEY])
        self._generator = None

    def _load(self) -> Any:
        with self._lock:
            if self._generator is None:
                if self._path is None:
                    raise RuntimeError("load_context was not called: no model folder")
                from loopline.models.base import load_generator  # lazy: torch only when used

                self._generator = load_generator(self._path)
            return self._generator

    # ``pd.DataFrame`` is a hint MLflow accepts without inferring a schema from it: the schema is
    # the explicit signature given at log time. Lists, dicts and strings are accepted too.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        prompts = _prompts(model_input)
        if not prompts:
            return []
        if _LOG_TIME_CHECK.get():
            return ["" for _ in prompts]
        generator = self._load()
        params = params or {}
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(params.get("max_new_tokens") or self.max_new_tokens)
        }
        if params.get("temperature") is not None:
            kwargs["temperature"] = float(params["temperature"])
        if params.get("seed") is not None:
            kwargs["seed"] = int(params["seed"])
        outputs: Sequence[Any] = generator.generate(prompts, **kwargs)
        texts = [_text(o) for o in outputs]
        if len(texts) != len(prompts):
            raise RuntimeError(
                f"generator returned {len(texts)} outputs for {len(prompts)} prompts"
            )
        return texts
