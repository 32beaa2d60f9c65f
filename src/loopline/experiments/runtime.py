"""What the serving layer asks per request: the serving plan and :func:`resolve`.

A :class:`ServingPlan` is the compiled, self-contained form of everything running: the
experiments (each variant's prompt template already resolved from the prompt registry), their
layers and the feature flags. The model server and the router load it from one JSON file and
evaluate it locally for every request, with no network hop: :func:`resolve` hashes the unit
into every experiment (layers keep experiments of one layer disjoint), evaluates every flag,
and merges what the unit is served into a :class:`Treatment`:

* ``model_version``: the version a variant pins (the router sends the unit to the backend
  serving it); ``None`` = whatever the backend serves.
* ``prompt_template``: a prompt-registry template with a ``{{ message }}`` variable that
  wraps the customer message before the model sees it.
* ``params``: generation parameters (``temperature``, ``max_tokens``, ``seed``).

Flags whose key starts with ``param.`` set the generation parameter of that name for the units
they are on for (a matching rule or inside the rollout percentage); an
experiment's variant overrides a flag on the same parameter (an experiment's comparison must
not be changed under it by a flag). Two running experiments may not set the same thing for
one unit: :meth:`ServingPlan` validation rejects two experiments in different layers that
both set the model version, the prompt, or one parameter (they could share a unit and one
would silently win). Units without an id are served the default and are not exposed.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loopline.experiments.assignment import Assignment, Layer, assign, layers_by_name
from loopline.experiments.flags import Attributes, evaluate_flag
from loopline.experiments.policy import ExperimentSpec, FlagSpec, FlagValue, LayerSpec

PLAN_FORMAT: Literal[1] = 1
PARAM_FLAG_PREFIX = "param."
HOLDOUT = "<holdout>"
"""How a held-out unit's arm is written in logs (it is exposed to the experiment, served the
default, and not part of the comparison)."""

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MESSAGE_VARIABLE = "message"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- parameters


def check_params(params: Mapping[str, FlagValue], where: str) -> dict[str, float | int]:
    """Generation parameters a variant or flag may set, validated; errors name ``where``."""
    out: dict[str, float | int] = {}
    for key, value in params.items():
        if key == "temperature":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{where}.temperature: expected a number, got {value!r}")
            if not (math.isfinite(value) and 0 <= value <= 2):
                raise ValueError(f"{where}.temperature: must be within [0, 2], got {value!r}")
            out[key] = float(value)
        elif key in ("max_tokens", "seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where}.{key}: expected an integer, got {value!r}")
            if key == "max_tokens" and value < 1:
                raise ValueError(f"{where}.max_tokens: must be >= 1, got {value}")
            out[key] = value
        else:
            raise ValueError(
                f"{where}: unknown generation parameter {key!r} "
                "(allowed: temperature, max_tokens, seed)"
            )
    return out


def template_variables(template: str) -> set[str]:
    """The ``{{ name }}`` variables of a prompt template."""
    return {m.group(1) for m in _VARIABLE.finditer(template)}


def check_template(template: str, where: str) -> str:
    """A template must use exactly one variable, ``{{ message }}``."""
    names = template_variables(template)
    if names != {MESSAGE_VARIABLE}:
        raise ValueError(
            f"{where}: a prompt template must use exactly the variable "
            f"{{{{ {MESSAGE_VARIABLE} }}}}, found {sorted(names) or 'none'}"
        )
    return template


def render_prompt(template: str | None, message: str) -> str:
    """The model input for ``message`` under ``template`` (``None``: the message itself)."""
    if template is None:
        return message
    return _VARIABLE.sub(
        lambda m: message if m.group(1) == MESSAGE_VARIABLE else m.group(0), template
    )


# --------------------------------------------------------------------------- the plan


class ServedVariant(_Frozen):
    """A variant as served: the prompt template it uses, resolved from the registry when the
    experiment was started (``prompt_version`` records which one, e.g. ``support/3``)."""

    name: str
    model_version: str | None = None
    prompt_version: str | None = None
    prompt_template: str | None = None
    params: dict[str, float | int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> ServedVariant:
        where = f"variant {self.name!r}"
        check_params(self.params, f"{where}.params")
        if self.prompt_template is not None:
            check_template(self.prompt_template, f"{where}.prompt_template")
        if self.prompt_version is not None and self.prompt_template is None:
            raise ValueError(f"{where}: prompt_version {self.prompt_version!r} has no template")
        return self

    @property
    def sets(self) -> set[str]:
        """What this variant changes: ``model``, ``prompt`` and ``param.<name>``."""
        out = {f"{PARAM_FLAG_PREFIX}{k}" for k in self.params}
        if self.model_version is not None:
            out.add("model")
        if self.prompt_template is not None:
            out.add("prompt")
        return out


class ServedExperiment(_Frozen):
    """One running experiment: its assignment spec and its served variants (same order)."""

    spec: ExperimentSpec
    variants: tuple[ServedVariant, ...]
    routes: dict[str, Literal["stable", "candidate"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _same_variants(self) -> ServedExperiment:
        if tuple(v.name for v in self.variants) != self.spec.variant_names:
            raise ValueError(
                f"experiment {self.spec.name!r}: served variants "
                f"{[v.name for v in self.variants]} differ from the spec's "
                f"{list(self.spec.variant_names)}"
            )
        unknown = sorted(set(self.routes) - set(self.spec.variant_names))
        if unknown:
            raise ValueError(
                f"experiment {self.spec.name!r}: routes name unknown variants {unknown}"
            )
        return self

    @property
    def name(self) -> str:
        return self.spec.name

    def variant(self, name: str) -> ServedVariant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"experiment {self.name!r} has no variant {name!r}")

    @property
    def sets(self) -> set[str]:
        out: set[str] = set()
        for v in self.variants:
            out |= v.sets
        return out

    @property
    def model_versions(self) -> dict[str, str]:
        """Variant name -> pinned model version (variants that pin one)."""
        return {v.name: v.model_version for v in self.variants if v.model_version is not None}

    def backend(self, variant: str | None) -> Literal["stable", "candidate"]:
        """The deployment role serving ``variant`` (units without a variant: stable)."""
        return self.routes.get(variant, "stable") if variant is not None else "stable"


class ServingPlan(_Frozen):
    """Everything the servers evaluate locally. ``generation`` grows with every change."""

    format: Literal[1] = PLAN_FORMAT
    generation: int = Field(0, ge=0)
    layers: tuple[LayerSpec, ...] = ()
    experiments: tuple[ServedExperiment, ...] = ()
    flags: tuple[FlagSpec, ...] = ()
    default: ServedVariant | None = None
    """What a shipped prompt or parameter variant made everyone's default."""

    @model_validator(mode="after")
    def _consistent(self) -> ServingPlan:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate running experiments: {names}")
        keys = [f.key for f in self.flags]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate flags: {keys}")
        for flag in self.flags:
            if flag.key.startswith(PARAM_FLAG_PREFIX):
                name = flag.key[len(PARAM_FLAG_PREFIX) :]
                values = [flag.on_value, flag.off_value, *(r.value for r in flag.rules)]
                for value in values:
                    if value is not None:
                        check_params({name: value}, f"flag {flag.key!r}")
        layers = {layer.name: layer for layer in self.layers}
        for exp in self.experiments:
            if exp.spec.layer is not None and exp.spec.layer not in layers:
                raise ValueError(f"experiment {exp.name!r} names unknown layer {exp.spec.layer!r}")
        layers_by_name(self.layers, [e.spec for e in self.experiments])  # disjoint ranges
        # experiments that can share a unit (different layers) must not set the same thing
        for i, a in enumerate(self.experiments):
            for b in self.experiments[i + 1 :]:
                if a.spec.layer is not None and a.spec.layer == b.spec.layer:
                    continue
                clash = a.sets & b.sets
                if clash:
                    raise ValueError(
                        f"experiments {a.name!r} and {b.name!r} can share units and both set "
                        f"{sorted(clash)}; put them in one layer or change different things"
                    )
        return self

    @functools.cached_property
    def compiled_layers(self) -> Mapping[str, Layer]:
        """The layers with their experiments, built once per plan (per request is hot)."""
        return layers_by_name(self.layers, [e.spec for e in self.experiments])

    def experiment(self, name: str) -> ServedExperiment | None:
        for e in self.experiments:
            if e.name == name:
                return e
        return None

    @property
    def routed(self) -> tuple[ServedExperiment, ...]:
        """Experiments whose variants the router sends to the candidate backend."""
        return tuple(e for e in self.experiments if e.routes)


# --------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Treatment:
    """What one unit is served: arms per experiment (``HOLDOUT`` for held-out units), flag
    values, and the merged model version, prompt and parameters."""

    unit_id: str | None
    arms: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, FlagValue] = field(default_factory=dict)
    model_version: str | None = None
    prompt_version: str | None = None
    prompt_template: str | None = None
    params: Mapping[str, float | int] = field(default_factory=dict)
    assignments: tuple[Assignment, ...] = ()

    def log_fields(self) -> dict[str, Any]:
        """The exposure fields of a request-log line."""
        return {
            "unit": self.unit_id,
            "experiments": dict(self.arms),
            "flags": dict(self.flags),
            "prompt_version": self.prompt_version,
        }

    def header(self) -> str:
        """``name=arm`` pairs for the ``x-loopline-experiments`` response header."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.arms.items()))


DEFAULT = Treatment(unit_id=None)


def _assignments(plan: ServingPlan, unit_id: str) -> list[tuple[ServedExperiment, Assignment]]:
    out: list[tuple[ServedExperiment, Assignment]] = []
    by_spec = {e.spec.name: e for e in plan.experiments}
    for layer in plan.compiled_layers.values():
        a = layer.assign(unit_id)
        if a is not None and a.in_experiment:
            out.append((by_spec[a.experiment], a))
    for exp in plan.experiments:
        if exp.spec.layer is None:
            a = assign(exp.spec, unit_id)
            if a.in_experiment:
                out.append((exp, a))
    return out


def resolve(
    plan: ServingPlan, unit_id: str | None, attributes: Attributes | None = None
) -> Treatment:
    """What ``unit_id`` is served under ``plan`` (see the module docstring)."""
    if not unit_id:
        return DEFAULT
    flags: dict[str, FlagValue] = {}
    base = plan.default
    params: dict[str, float | int] = dict(base.params) if base is not None else {}
    prompt_version = base.prompt_version if base is not None else None
    prompt_template = base.prompt_template if base is not None else None
    for flag in plan.flags:
        evaluation = evaluate_flag(flag, unit_id, attributes)
        value = evaluation.value
        flags[flag.key] = value
        # a parameter flag changes the units it is on for; the others keep what they asked
        if flag.key.startswith(PARAM_FLAG_PREFIX) and evaluation.reason in ("rule", "rollout"):
            name = flag.key[len(PARAM_FLAG_PREFIX) :]
            params.update(check_params({name: value}, f"flag {flag.key!r}"))
    arms: dict[str, str] = {}
    model_version: str | None = None
    assignments: list[Assignment] = []
    for exp, a in _assignments(plan, unit_id):
        assignments.append(a)
        if a.variant is None:
            arms[exp.name] = HOLDOUT
            continue
        arms[exp.name] = a.variant
        v = exp.variant(a.variant)
        params.update(v.params)
        if v.model_version is not None:
            model_version = v.model_version
        if v.prompt_template is not None:
            prompt_version, prompt_template = v.prompt_version, v.prompt_template
    return Treatment(
        unit_id=unit_id,
        arms=arms,
        flags=flags,
        model_version=model_version,
        prompt_version=prompt_version,
        prompt_template=prompt_template,
        params=params,
        assignments=tuple(assignments),
    )


def route(plan: ServingPlan, unit_id: str | None) -> Literal["stable", "candidate"]:
    """The backend role for ``unit_id`` (the router's question): the candidate when the unit
    is in a routed experiment's variant that the candidate serves, else stable."""
    if not unit_id:
        return "stable"
    for exp, a in _assignments(plan, unit_id):
        if exp.routes and exp.backend(a.variant) == "candidate":
            return "candidate"
    return "stable"


def unit_of(header_user: str | None, body: Mapping[str, Any] | None) -> str | None:
    """The unit id of a request: the ``x-loopline-user`` header, else the OpenAI ``user``
    field of the body; ``None`` when neither is a non-empty string."""
    if header_user:
        return header_user
    if body is not None:
        user = body.get("user")
        if isinstance(user, str) and user:
            return user
    return None


def attributes_of(body: Mapping[str, Any] | None) -> dict[str, object]:
    """Targeting attributes of a request: the scalar values of the body's ``metadata`` object
    (OpenAI's field for request tags), as sent; numeric conditions (``lt``, ``ge``, ...) need
    JSON numbers, ``eq``/``in`` compare strings as strings."""
    meta = body.get("metadata") if body is not None else None
    if not isinstance(meta, Mapping):
        return {}
    return {
        key: value
        for key, value in meta.items()
        if isinstance(key, str) and isinstance(value, str | bool | int | float)
    }
