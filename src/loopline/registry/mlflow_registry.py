"""MLflow adapter: one run per trained model, a pyfunc model wrapping the HF folder, versions
and aliases in the model registry.

Locations come from :class:`~loopline.config.Settings` (``tracking_uri``, ``registry_uri``,
``artifact_location``, ``tracking.experiment``); nothing is ever written relative to the cwd.

Order of operations of :meth:`ModelRegistry.log_and_register`
------------------------------------------------------------
0. Validate the inputs and build every payload in memory (model folder present with its
   ``loopline_model.json`` marker and the fingerprint the lineage claims, numeric metrics,
   params, report JSON). Nothing is written to MLflow if this fails.
1. Get or create the experiment (idempotent).
2. Create the run (``RUNNING``) tagged with the lineage tags.
3. Create the LoggedModel (``PENDING``) as an output of the run.
4. ``log_batch``: params, evaluation metrics (linked to the LoggedModel), per-intent slice
   metrics ``slice.<intent>.<metric>``, train metrics ``train.<key>`` and the loss curve as
   the step metric ``train.loss``. One call, two when MLflow's batch limits require it.
5. Artifacts of the run: ``reports/eval_report.json``, ``reports/train_report.json``.
6. The pyfunc model (HF folder, tokenizer included, as the ``hf_model`` artifact; signature;
   input example; explicit pip requirements). The LoggedModel becomes ``READY`` only once
   every file is stored. MLflow checks the input example against the signature by predicting
   it; the generator is not loaded for that (see ``pyfunc_model.log_time_check``).
7. Get or create the registered model (idempotent).
8. Create the model version with the lineage tags as version tags.  <- first registry change
9. Point the ``challenger`` alias at it.                             <- second registry change
10. Mark the run ``FINISHED``.

A failure in steps 2-7 leaves no version: the run is marked ``FAILED`` (and the LoggedModel
``FAILED``). A failure in steps 8-9 also deletes the version just created (and the registered
model, if this call created it and it has no other version) before marking the run ``FAILED``,
so the registry is never left half-changed. A failure in step 10 leaves a complete version
whose run is still ``RUNNING``; the error is raised.

MLflow's fluent API reads process-wide URIs, and some of MLflow's stores call it internally
(the SQL registry resolves ``models:/<id>`` through a default client). Every operation here
therefore runs with the tracking and registry URIs set to the configured ones, under a
process-wide lock, and restores the previous values afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopline.config import Settings
from loopline.registry.lineage import (
    TAG_PREFIX,
    Lineage,
    is_fingerprint,
    model_fingerprint,
    safe_key,
)
from loopline.runtime import configure_environment

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
MODEL_MARKER = "loopline_model.json"
LOGGED_MODEL_NAME = "model"
EVAL_REPORT_ARTIFACT = "reports/eval_report.json"
TRAIN_REPORT_ARTIFACT = "reports/train_report.json"
MODEL_CARD_ARTIFACT = "model_card.md"
LOSS_METRIC = "train.loss"
LOSS_CURVE_KEYS = ("loss_curve", "losses", "loss_history")
SLICE_KEYS = ("per_intent", "slices")
TRAIN_PARAM_KEYS = frozenset({"mode", "seed", "base_model"})
DESCRIPTION_LIMIT = 5000
"""Model version descriptions are ``VARCHAR(5000)`` in MLflow's SQL schema."""

# Packages the generator needs at load time, pinned to the versions running here.
RUNTIME_PACKAGES = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "pandas",
    "numpy",
)
_ALIAS = re.compile(r"[\w-]+")

# MLflow's log_batch limits (mlflow.utils.validation).
_MAX_METRICS = 1000
_MAX_PARAMS_TAGS = 100
_MAX_ENTITIES = 1000
_MAX_PARAM_LEN = 6000


class RegistryError(RuntimeError):
    """A registry operation could not be carried out (the message says what and why)."""


class ModelFolderError(RegistryError, FileNotFoundError):
    """The model folder to register is missing or is not a Loopline model folder."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version with its run's metrics. ``run_id`` is ``""`` for a version registered
    outside Loopline without a run (every version ``log_and_register`` creates has one)."""

    name: str
    version: str
    run_id: str
    model_uri: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""

    @property
    def eval_metrics(self) -> dict[str, float]:
        """The evaluation's headline metrics (names without a ``train.``/``slice.`` prefix)."""
        return {k: v for k, v in self.metrics.items() if "." not in k}

    @property
    def lineage(self) -> Lineage:
        return Lineage.from_tags(self.tags)

    @property
    def lineage_tags(self) -> dict[str, str]:
        return {k: v for k, v in self.tags.items() if k.startswith(TAG_PREFIX)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "aliases": list(self.aliases),
            "metrics": dict(self.eval_metrics),
            "lineage": self.lineage_tags,
            "tags": dict(self.tags),
        }


# -- pure helpers: report parsing and batch building -------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def split_eval_report(
    report: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``(metrics, slices)`` of an evaluation report.

    Accepted shapes: ``{"metrics": {...}, "per_intent": {intent: {...}}}`` (the evaluation
    stage's report; ``"slices"`` is accepted for ``"per_intent"``), or the metrics at the top
    level next to the slices. Everything else is kept in the JSON artifact only.
    """
    source = report.get("metrics")
    top = source if isinstance(source, Mapping) else report
    metrics = {
        str(k): v
        for k, raw in top.items()
        if k not in SLICE_KEYS and (v := _number(raw)) is not None
    }
    slices: dict[str, dict[str, float]] = {}
    raw_slices = next((report[k] for k in SLICE_KEYS if k in report), None)
    if isinstance(raw_slices, Mapping):
        for intent, values in raw_slices.items():
            if isinstance(values, Mapping):
                numbers = {
                    str(k): v for k, raw in values.items() if (v := _number(raw)) is not None
                }
                slices[str(intent)] = numbers
    return metrics, slices


def loss_curve(report: Mapping[str, Any]) -> list[tuple[int, float]]:
    """``[(step, loss), ...]`` from a train report's loss curve, whatever its shape.

    Shapes: a list of losses (step = index), a list of ``[step, loss]`` pairs, a list of
    ``{"step": s, "loss": l}`` mappings, or a ``{step: loss}`` mapping.
    """
    raw: Any = None
    for key in LOSS_CURVE_KEYS:
        if key in report:
            raw = report[key]
            break
    points: list[tuple[int, float]] = []
    if isinstance(raw, Mapping):
        items: Sequence[Any] = [(k, v) for k, v in raw.items()]
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        items = raw
    else:
        return points
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            step, loss = item.get("step", index), item.get("loss")
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            step, loss = item[0], item[1]
        else:
            step, loss = index, item
        value = _number(loss)
        try:
            step_int = int(step)
        except (TypeError, ValueError):
            continue
        if value is not None:
            points.append((step_int, value))
    return points


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = json.dumps(value, default=str, sort_keys=True)
    if len(text) > _MAX_PARAM_LEN:
        text = text[: _MAX_PARAM_LEN - 1] + "…"
    return text


@dataclass(frozen=True)
class RunPayload:
    """Everything ``log_and_register`` writes to the run, computed before any write."""

    params: dict[str, str]
    eval_metrics: dict[str, float]
    other_metrics: dict[str, float]
    loss: list[tuple[int, float]]
    eval_json: str
    train_json: str


def build_payload(
    train_report: Mapping[str, Any],
    eval_report: Mapping[str, Any],
    params: Mapping[str, Any] | None,
) -> RunPayload:
    metrics, slices = split_eval_report(eval_report)
    if not metrics:
        raise ValueError("the evaluation report has no numeric metrics")
    eval_metrics = {safe_key(k): v for k, v in metrics.items()}
    other: dict[str, float] = {}
    for intent, values in slices.items():
        for name, value in values.items():
            other[safe_key(f"slice.{intent}.{name}")] = value
    run_params = {safe_key(k): _param_text(v) for k, v in _flatten(params or {}).items()}
    curve_keys = set(LOSS_CURVE_KEYS)
    for key, value in _flatten(
        {k: v for k, v in train_report.items() if k not in curve_keys}
    ).items():
        name = safe_key(f"train.{key}")
        number = _number(value)
        if key in TRAIN_PARAM_KEYS or (number is None and not isinstance(value, list | tuple)):
            run_params.setdefault(name, _param_text(value))
        elif number is not None:
            other[name] = number
    try:
        eval_json = json.dumps(eval_report, indent=2, sort_keys=True, default=str)
        train_json = json.dumps(train_report, indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"reports must be JSON-serialisable: {exc}") from exc
    return RunPayload(
        params=run_params,
        eval_metrics=eval_metrics,
        other_metrics=other,
        loss=loss_curve(train_report),
        eval_json=eval_json,
        train_json=train_json,
    )


def _batches(
    metrics: Sequence[Any], params: Sequence[Any]
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Split metrics and params into as few ``log_batch`` calls as MLflow's limits allow."""
    metrics, params = list(metrics), list(params)
    while metrics or params:
        batch_params, params = params[:_MAX_PARAMS_TAGS], params[_MAX_PARAMS_TAGS:]
        room = min(_MAX_METRICS, _MAX_ENTITIES - len(batch_params))
        batch_metrics, metrics = metrics[:room], metrics[room:]
        yield batch_metrics, batch_params


def pip_requirements() -> list[str]:
    """Pinned requirements of the pyfunc model, from the versions installed here."""
    reqs = []
    for package in RUNTIME_PACKAGES:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
        reqs.append(f"{package}=={version.split('+', 1)[0]}")
    return reqs


def check_model_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not path.is_dir():
        raise ModelFolderError(f"model folder not found: {path}")
    if not (path / MODEL_MARKER).is_file():
        raise ModelFolderError(f"{path} is not a Loopline model folder: {MODEL_MARKER} is missing")
    return path


# -- process-wide MLflow URIs -------------------------------------------------------------------
_URI_LOCK = threading.RLock()


@contextlib.contextmanager
def _mlflow_uris(tracking_uri: str, registry_uri: str) -> Iterator[None]:
    """Point MLflow's process-wide URIs at ours for the duration; restore them afterwards."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _URI_LOCK:
        saved_tracking = tracking_utils._tracking_uri
        saved_registry = registry_utils._registry_uri
        saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)
        try:
            yield
        finally:
            if saved_tracking is None:
                tracking_utils._tracking_uri = None
            else:
                mlflow.set_tracking_uri(saved_tracking)
            registry_utils._registry_uri = saved_registry
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _ensure_sqlite_parent(uri: str) -> None:
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix) :].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


class ModelRegistry:
    """Registered model ``settings.model.name``; its runs in ``settings.tracking.experiment``."""

    def __init__(self, settings: Settings) -> None:
        configure_environment()
        from mlflow import MlflowClient

        self.settings = settings
        self.name = settings.model.name
        self.tracking_uri = settings.tracking_uri
        self.registry_uri = settings.registry_uri
        self.artifact_location = settings.artifact_location
        self.experiment_name = settings.tracking.experiment
        _ensure_sqlite_parent(self.tracking_uri)
        _ensure_sqlite_parent(self.registry_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        self._experiment_id: str | None = None

    # -- plumbing ---------------------------------------------------------------------------
    def _uris(self) -> contextlib.AbstractContextManager[None]:
        return _mlflow_uris(self.tracking_uri, self.registry_uri)

    def experiment_id(self) -> str:
        """The experiment's id, creating it (with ``artifact_location``) on first use."""
        if self._experiment_id is not None:
            return self._experiment_id
        from mlflow.exceptions import MlflowException

        with self._uris():
            exp = self.client.get_experiment_by_name(self.experiment_name)
            if exp is None:
                try:
                    exp_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=self.artifact_location
                    )
                except MlflowException as exc:  # created concurrently by another process
                    exp = self.client.get_experiment_by_name(self.experiment_name)
                    if exp is None:
                        raise RegistryError(
                            f"cannot create experiment {self.experiment_name!r}: {exc}"
                        ) from exc
                    exp_id = exp.experiment_id
            else:
                if exp.lifecycle_stage == "deleted":
                    raise RegistryError(
                        f"experiment {self.experiment_name!r} is deleted; restore it "
                        "(mlflow experiments restore) or configure another tracking.experiment"
                    )
                exp_id = exp.experiment_id
        self._experiment_id = exp_id
        return exp_id

    def _ensure_registered_model(self) -> bool:
        """Create the registered model if missing; ``True`` if this call created it."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(
                self.name,
                tags={f"{TAG_PREFIX}project": self.settings.project},
                description=f"{self.settings.project}: {self.name} (Loopline support model)",
            )
            return True
        except MlflowException as exc:
            if _error_code(exc) in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                return False
            raise

    def _registered_model(self) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if _error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _version(self, mv: Any) -> RegisteredVersion:
        metrics: dict[str, float] = {}
        if mv.run_id:
            metrics = dict(self.client.get_run(mv.run_id).data.metrics)
        return RegisteredVersion(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            model_uri=f"models:/{mv.name}/{mv.version}",
            metrics=metrics,
            tags=dict(mv.tags or {}),
            aliases=tuple(sorted(mv.aliases or ())),
            description=mv.description or "",
        )

    def _resolve(self, version_or_alias: str | int) -> str:
        """A version number as a string, from a version number or an alias."""
        text = str(version_or_alias)
        if text.isdigit():
            return text
        found = self.get_by_alias(text)
        if found is None:
            raise RegistryError(f"model {self.name!r} has no alias {text!r}")
        return found.version

    # -- registration -----------------------------------------------------------------------
    def log_and_register(
        self,
        model_dir: str | Path,
        train_report: Mapping[str, Any],
        eval_report: Mapping[str, Any],
        lineage: Lineage,
        params: Mapping[str, Any] | None = None,
        *,
        run_name: str | None = None,
    ) -> RegisteredVersion:
        """Log one run for ``model_dir`` and register it as a new version aliased ``challenger``.

        See the module docstring for the order of operations and what a failure leaves behind.
        """
        import mlflow
        import pandas as pd
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

        from loopline.registry.pyfunc_model import (
            ARTIFACT_KEY,
            PROMPT_COLUMN,
            LooplinePyfuncModel,
            log_time_check,
        )

        # 0. everything that can be checked without MLflow
        model_path = check_model_dir(model_dir)
        payload = build_payload(train_report, eval_report, params)
        actual = model_fingerprint(model_path)
        if lineage.model_fingerprint != actual:
            raise ValueError(
                f"lineage.model_fingerprint {lineage.model_fingerprint[:12]}… does not match "
                f"the content of {model_path} ({actual[:12]}…): collect the lineage of this folder"
            )
        lineage_tags = lineage.as_tags()
        max_new_tokens = self.settings.evaluation.max_new_tokens
        signature = ModelSignature(
            inputs=Schema([ColSpec("string", PROMPT_COLUMN)]),
            outputs=Schema([ColSpec("string")]),
            params=ParamSchema(
                [
                    ParamSpec("max_new_tokens", "long", max_new_tokens),
                    ParamSpec("temperature", "double", 0.0),
                    ParamSpec("seed", "long", None),
                ]
            ),
        )
        example = pd.DataFrame({PROMPT_COLUMN: ["I was charged twice for my subscription."]})
        marker = _read_marker(model_path)
        name = run_name or f"{self.name}-{lineage.model_fingerprint[:12]}"

        # 1. the experiment
        experiment_id = self.experiment_id()
        with self._uris():
            # 2. the run
            run = self.client.create_run(
                experiment_id,
                run_name=name,
                tags={**lineage_tags, f"{TAG_PREFIX}model_name": self.name},
            )
            run_id = run.info.run_id
            model_id: str | None = None
            version: str | None = None
            created_model = False
            try:
                # 3. the LoggedModel, an output of the run
                logged = self.client.create_logged_model(
                    experiment_id,
                    name=LOGGED_MODEL_NAME,
                    source_run_id=run_id,
                    tags=lineage_tags,
                    model_type="loopline-generator",
                )
                model_id = logged.model_id
                self.client.log_outputs(run_id, [LoggedModelOutput(model_id, step=0)])

                # 4. params and metrics
                now = int(time.time() * 1000)
                metrics = [
                    Metric(k, v, now, 0, model_id=model_id) for k, v in payload.eval_metrics.items()
                ]
                metrics += [Metric(k, v, now, 0) for k, v in payload.other_metrics.items()]
                metrics += [Metric(LOSS_METRIC, loss, now, step) for step, loss in payload.loss]
                params_list = [Param(k, v) for k, v in payload.params.items()]
                for batch_metrics, batch_params in _batches(metrics, params_list):
                    self.client.log_batch(run_id, metrics=batch_metrics, params=batch_params)

                # 5. reports
                self.client.log_text(run_id, payload.eval_json, EVAL_REPORT_ARTIFACT)
                self.client.log_text(run_id, payload.train_json, TRAIN_REPORT_ARTIFACT)

                # 6. the pyfunc model (LoggedModel READY once every file is stored)
                def log_model() -> None:
                    # MLflow predicts the input example to validate it: no generator for that.
                    with log_time_check():
                        _log_pyfunc()

                def _log_pyfunc() -> None:
                    mlflow.pyfunc.log_model(
                        name=LOGGED_MODEL_NAME,
                        model_id=model_id,
                        python_model=LooplinePyfuncModel(max_new_tokens),
                        artifacts={ARTIFACT_KEY: str(model_path)},
                        signature=signature,
                        input_example=example,
                        pip_requirements=pip_requirements(),
                        metadata={"loopline": {**lineage_tags, "marker": marker}},
                    )

                if mlflow.active_run() is None:
                    log_model()
                else:
                    # The fluent API would attach the model to the caller's active run; a
                    # fresh thread has no active run.
                    with ThreadPoolExecutor(1) as pool:
                        pool.submit(log_model).result()

                # 7-9. registry
                created_model = self._ensure_registered_model()
                mv = self.client.create_model_version(
                    self.name,
                    source=f"models:/{model_id}",
                    run_id=run_id,
                    tags=lineage_tags,
                    model_id=model_id,
                )
                version = str(mv.version)
                if mv.status != "READY":
                    raise RegistryError(
                        f"version {version} of {self.name!r} is {mv.status}, not READY"
                    )
                self.client.set_registered_model_alias(self.name, CHALLENGER, version)
                with contextlib.suppress(Exception):  # UI nicety only
                    self.client.set_logged_model_tags(
                        model_id,
                        {
                            "mlflow.modelVersions": json.dumps(
                                [{"name": self.name, "version": version}]
                            )
                        },
                    )
            except BaseException as exc:
                self._undo_registration(version, created_model, model_id, LoggedModelStatus.FAILED)
                status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                with contextlib.suppress(Exception):
                    self.client.set_terminated(run_id, status)
                exc.add_note(
                    f"loopline: registering {model_path} as a version of {self.name!r} failed; "
                    f"run {run_id} marked {status}, nothing registered"
                )
                raise

            # 10. done
            self.client.set_terminated(run_id, "FINISHED")
            return self._version(self.client.get_model_version(self.name, version))

    def _undo_registration(
        self, version: str | None, created_model: bool, model_id: str | None, failed: Any
    ) -> None:
        if version is not None:
            try:
                self.client.delete_model_version(self.name, version)
            except Exception:
                logger.exception("could not delete version %s of %s", version, self.name)
        if created_model:
            with contextlib.suppress(Exception):
                if not self.client.search_model_versions(f"name = '{self.name}'"):
                    self.client.delete_registered_model(self.name)
        if model_id is not None:
            with contextlib.suppress(Exception):
                self.client.finalize_logged_model(model_id, failed)

    # -- queries ----------------------------------------------------------------------------
    def get_version(self, version: str | int) -> RegisteredVersion:
        from mlflow.exceptions import MlflowException

        with self._uris():
            try:
                mv = self.client.get_model_version(self.name, str(version))
            except MlflowException as exc:
                raise RegistryError(f"model {self.name!r} has no version {version}") from exc
            return self._version(mv)

    def get_by_alias(self, alias: str) -> RegisteredVersion | None:
        """The version ``alias`` points at (with its run's metrics), or ``None``."""
        _check_alias(alias)
        with self._uris():
            model = self._registered_model()
            if model is None:
                return None
            aliases = _aliases_of(model)
            if alias not in aliases:
                return None
            return self._version(self.client.get_model_version(self.name, aliases[alias]))

    def find_by_fingerprint(self, fingerprint: str) -> RegisteredVersion | None:
        """The newest version whose model folder had this content fingerprint, or ``None``."""
        if not is_fingerprint(fingerprint):
            raise ValueError(f"not a sha256 fingerprint: {fingerprint!r}")
        with self._uris():
            found = self.client.search_model_versions(
                f"name = '{self.name}' and tags.`{TAG_PREFIX}model_fingerprint` = '{fingerprint}'"
            )
            ready = [mv for mv in found if mv.status == "READY"]
            if not ready:
                return None
            newest = max(ready, key=lambda mv: int(mv.version))
            return self._version(newest)

    def list_versions(self) -> list[RegisteredVersion]:
        with self._uris():
            found = self.client.search_model_versions(f"name = '{self.name}'")
            return [self._version(mv) for mv in sorted(found, key=lambda mv: int(mv.version))]

    def status(self) -> dict[str, Any]:
        """Champion and challenger with their evaluation metrics and lineage tags."""
        champion = self.get_by_alias(CHAMPION)
        challenger = self.get_by_alias(CHALLENGER)
        with self._uris():
            model = self._registered_model()
        return {
            "model": self.name,
            "tracking_uri": self.tracking_uri,
            "experiment": self.experiment_name,
            "registered": model is not None,
            "aliases": _aliases_of(model) if model is not None else {},
            "champion": champion.as_dict() if champion else None,
            "challenger": challenger.as_dict() if challenger else None,
        }

    # -- changes ----------------------------------------------------------------------------
    def set_alias(self, alias: str, version: str | int) -> None:
        _check_alias(alias)
        with self._uris():
            self.client.get_model_version(self.name, str(version))  # raises if missing
            self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        _check_alias(alias)
        from mlflow.exceptions import MlflowException

        with self._uris():
            model = self._registered_model()
            if model is None or alias not in _aliases_of(model):
                return
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model_alias(self.name, alias)

    def promote(self, version: str | int) -> str | None:
        """Make ``version`` the champion; returns the previous champion's version, if any.

        Order: ``previous_champion`` -> old champion (so a rollback target exists before
        anything moves), then ``champion`` -> version (the commit point), then ``challenger``
        is removed if it pointed at the promoted version.
        """
        target = str(version)
        previous = self.get_by_alias(CHAMPION)
        if previous is not None and previous.version == target:
            return previous.version
        self.get_version(target)  # raises if missing
        if previous is not None:
            self.set_alias(PREVIOUS_CHAMPION, previous.version)
        self.set_alias(CHAMPION, target)
        challenger = self.get_by_alias(CHALLENGER)
        if challenger is not None and challenger.version == target:
            self.delete_alias(CHALLENGER)
        return previous.version if previous is not None else None

    def set_description(self, version: str | int, markdown: str) -> None:
        """Set the version's description (cut to MLflow's 5000-character column, with a note)."""
        text = _fit_description(markdown)
        with self._uris():
            self.client.update_model_version(self.name, str(version), description=text)

    def log_model_card(self, version: str | int, markdown: str) -> str:
        """Store the card as ``model_card.md`` in the version's run and as its description.

        Returns the artifact URI of the card. The artifact is written first: if setting the
        description fails, the (overwritable) artifact is all that changed.
        """
        mv = self.get_version(version)
        if not mv.run_id:
            raise RegistryError(
                f"version {mv.version} of {self.name!r} has no run to store a card in"
            )
        with self._uris():
            self.client.log_text(mv.run_id, markdown, MODEL_CARD_ARTIFACT)
            run = self.client.get_run(mv.run_id)
            self.client.update_model_version(
                self.name, mv.version, description=_fit_description(markdown)
            )
        return f"{run.info.artifact_uri.rstrip('/')}/{MODEL_CARD_ARTIFACT}"

    def read_run_artifact(self, version: str | int, artifact: str) -> str:
        """Text of an artifact of a version's run, e.g. ``reports/eval_report.json``."""
        import mlflow.artifacts

        mv = self.get_version(version)
        if not mv.run_id:
            raise RegistryError(f"version {mv.version} of {self.name!r} has no run")
        with self._uris():
            return mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{artifact}")

    # -- download ---------------------------------------------------------------------------
    def download_model(self, version_or_alias: str | int, dst: str | Path) -> Path:
        """Download the version's Hugging Face folder to ``dst`` and return ``dst``.

        ``dst`` must not exist or be an empty directory. The files are fetched next to it and
        moved into place in one rename, then checked against the version's fingerprint tag.
        """
        import mlflow.artifacts

        dst = Path(dst)
        if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
            raise FileExistsError(f"download destination is not empty: {dst}")
        version = self._resolve(version_or_alias)
        expected = self.get_version(version).tags.get(f"{TAG_PREFIX}model_fingerprint")
        dst.parent.mkdir(parents=True, exist_ok=True)
        base = f"models:/{self.name}/{version}"
        with self._uris(), tempfile.TemporaryDirectory(dir=dst.parent, prefix=".download-") as tmp:
            mlmodel = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/MLmodel",
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )
            conf = yaml.safe_load(Path(mlmodel).read_text(encoding="utf-8"))
            try:
                rel = conf["flavors"]["python_function"]["artifacts"]["hf_model"]["path"]
            except (KeyError, TypeError) as exc:
                raise RegistryError(
                    f"{base} is not a Loopline pyfunc model (no hf_model artifact)"
                ) from exc
            folder = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{base}/{rel}",
                    dst_path=str(Path(tmp) / "files"),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
            )
            if expected and is_fingerprint(expected):
                actual = model_fingerprint(folder)
                if actual != expected:
                    raise RegistryError(
                        f"downloaded model of version {version} has fingerprint {actual}, "
                        f"registered {expected}"
                    )
            if dst.exists():
                dst.rmdir()
            shutil.move(str(folder), str(dst))
        return dst


def _aliases_of(model: Any) -> dict[str, str]:
    aliases = getattr(model, "aliases", None) or {}
    if isinstance(aliases, Mapping):
        return {str(k): str(v) for k, v in aliases.items()}
    return {str(a.alias): str(a.version) for a in aliases}


def _check_alias(alias: str) -> None:
    if not _ALIAS.fullmatch(alias) or alias.lower() == "latest":
        raise ValueError(
            f"invalid alias {alias!r}: letters, digits, '_' and '-' only, not 'latest'"
        )


def _fit_description(markdown: str) -> str:
    if len(markdown) <= DESCRIPTION_LIMIT:
        return markdown
    note = f"\n\n… (truncated; the full card is the run artifact {MODEL_CARD_ARTIFACT})"
    return markdown[: DESCRIPTION_LIMIT - len(note)] + note


def _read_marker(model_dir: Path) -> Any:
    text = (model_dir / MODEL_MARKER).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text[:2000]
