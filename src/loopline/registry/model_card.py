"""Model card: a Markdown page for a registered version. Pure text, no I/O.

Sections: intended use, training data and its version (DVC hashes), training, evaluation
metrics with each gate's verdict, per-intent slices, the promotion decision (when known),
limitations, base model and license, lineage.

``render_model_card`` builds the card of a :class:`RegisteredVersion` from the settings and the
train/eval reports; ``render_card`` is the same page from explicit parts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loopline.config import Settings
from loopline.evaluation.gates import GateCheck, GateResult, fmt
from loopline.registry.lineage import UNKNOWN, Lineage
from loopline.registry.mlflow_registry import RegisteredVersion, split_eval_report
from loopline.registry.promotion import PromotionDecision

DEFAULT_INTENDED_USE = (
    "Drafting first replies to customer-support tickets and labelling each ticket's intent, "
    "for review by a human agent before anything is sent. Not for autonomous replies, legal, "
    "medical or financial advice, or decisions about individual customers."
)

DEFAULT_LIMITATIONS: tuple[str, ...] = (
    "Trained and evaluated on a synthetic, seeded support-ticket corpus; real tickets differ "
    "in vocabulary, length and intent mix.",
    "English only; other languages and registers are out of distribution.",
    "Replies are generated text: they can state wrong facts (amounts, dates, policies) with "
    "confidence and must be checked against the customer's account.",
    "Intents not seen in training cannot be labelled correctly, and quality drops under "
    "drift (new intents, longer or off-domain prompts).",
    "Slice metrics on few examples are noisy; see the n column.",
)

SLICE_COLUMNS = ("intent_accuracy", "rouge_l", "chrf", "semantic_similarity")
SMALL_SLICE = 20


def _cell(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_count(name: str) -> bool:
    return name == "n" or name.startswith("n_")


def _value(value: Any, name: str = "") -> str:
    if isinstance(value, float) and value.is_integer() and _is_count(name):
        return str(int(value))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{value:.0f}"
        return fmt(value)
    return _cell(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _gate_text(check: GateCheck) -> str:
    if check.kind == "min":
        return f"≥ {fmt(check.threshold or 0.0)}"
    if check.kind == "max":
        return f"≤ {fmt(check.threshold or 0.0)}"
    if check.skipped or check.reference is None:
        return "no regression (no champion)"
    return f"no regression vs {fmt(check.reference)}"


def _verdict(check: GateCheck) -> str:
    if check.skipped:
        return "skipped"
    return "pass" if check.passed else "**FAIL**"


def _metrics_section(metrics: Mapping[str, float], gates: GateResult | None) -> list[str]:
    rows: list[list[Any]] = []
    gated = set()
    checks = gates.checks if gates is not None else ()
    for check in checks:
        gated.add(check.metric)
        value = metrics.get(check.metric, check.value)
        rows.append(
            [
                check.metric,
                "missing" if value is None else _value(value),
                _gate_text(check),
                _verdict(check),
            ]
        )
    for name in sorted(metrics):
        if name not in gated:
            rows.append([name, _value(metrics[name], name), "—", "not gated"])
    lines = ["## Evaluation", ""]
    if gates is not None:
        verdict = "passed" if gates.passed else "FAILED"
        lines += [f"Gates {verdict}: {gates.summary}.", ""]
    lines += _table(["metric", "value", "gate", "verdict"], rows)
    failures = gates.failures if gates is not None else ()
    if failures:
        lines += ["", "Failed checks:", ""] + [f"- {c.message}" for c in failures]
    return lines


def _slices_section(
    slices: Mapping[str, Mapping[str, float]], gates: GateResult | None
) -> list[str]:
    lines = ["## Evaluation slices (per intent)", ""]
    if not slices:
        return [*lines, "No per-intent slices were reported."]
    minimum = {
        c.metric: c.threshold
        for c in (gates.checks if gates is not None else ())
        if c.kind == "min" and c.threshold is not None
    }
    extra = sorted({k for s in slices.values() for k in s} - {"n", *SLICE_COLUMNS})
    columns = [c for c in SLICE_COLUMNS if any(c in s for s in slices.values())] + extra
    rows = []
    flagged = []
    for intent in sorted(slices):
        values = slices[intent]
        n = values.get("n")
        row: list[Any] = [intent, "—" if n is None else _value(int(n))]
        for col in columns:
            v = values.get(col)
            if v is None:
                row.append("—")
                continue
            text = _value(v)
            bound = minimum.get(col)
            if bound is not None and math.isfinite(v) and v < bound:
                text += " ⚠"
                flagged.append(f"{intent}: {col} {fmt(v)} below the gate minimum {fmt(bound)}")
            row.append(text)
        rows.append(row)
    lines += _table(["intent", "n", *columns], rows)
    small = sorted(i for i, s in slices.items() if s.get("n") is not None and s["n"] < SMALL_SLICE)
    if flagged:
        lines += ["", "⚠ Slices below a gate minimum (gates apply to the overall metric only):", ""]
        lines += [f"- {f}" for f in flagged]
    if small:
        lines += ["", f"Slices with fewer than {SMALL_SLICE} examples: {', '.join(small)}."]
    return lines


def _training_section(train_report: Mapping[str, Any] | None) -> list[str]:
    lines = ["## Training", ""]
    if not train_report:
        return [*lines, "No training report was provided."]
    rows = []
    for key in sorted(train_report):
        value = train_report[key]
        if isinstance(value, list | tuple):
            rows.append([key, f"{len(value)} points"])
        elif isinstance(value, Mapping):
            rows.append([key, ", ".join(f"{k}={_value(v)}" for k, v in value.items())])
        else:
            rows.append([key, _value(value)])
    return lines + _table(["field", "value"], rows)


def render_card(
    *,
    model_name: str,
    version: str | None,
    metrics: Mapping[str, float],
    lineage: Lineage,
    gates: GateResult | None = None,
    slices: Mapping[str, Mapping[str, float]] | None = None,
    train_report: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    base_model: str | None = None,
    model_license: str = "Apache-2.0",
    decision: PromotionDecision | None = None,
    intended_use: str = DEFAULT_INTENDED_USE,
    limitations: Sequence[str] = DEFAULT_LIMITATIONS,
    data_description: str = "Synthetic support tickets (prompt, intent, reference reply) "
    "generated from a seeded corpus generator, redacted and split into train/val/test.",
) -> str:
    """The Markdown model card from its parts (see ``render_model_card`` for the usual entry)."""
    title = f"# Model card: {model_name}" + (f" v{version}" if version else "")
    base = base_model or "none (tiny Llama-architecture model trained from scratch)"
    lines = [title, ""]
    if decision is not None:
        lines += [f"**Promotion decision:** {decision.action}", ""]

    lines += ["## Intended use", "", intended_use, ""]

    lines += ["## Training data", "", data_description, ""]
    lines += [f"Data version (sha256 over the DVC hashes): `{lineage.data_version}`", ""]
    if lineage.data_hashes:
        lines += _table(
            ["path", "DVC md5"],
            [[p, f"`{h}`"] for p, h in sorted(lineage.data_hashes.items())],
        )
    else:
        lines.append("No `dvc.lock` was found: the data version is unknown.")
    lines.append("")

    lines += [*_training_section(train_report), ""]
    lines += [*_metrics_section(metrics, gates), ""]
    lines += [*_slices_section(slices or {}, gates), ""]

    if decision is not None:
        champ = f"v{decision.champion_version}" if decision.champion_version else "none"
        lines += ["## Promotion", "", f"Action: **{decision.action}** (champion: {champ})", ""]
        lines += [f"- {r}" for r in decision.reasons] + [""]

    lines += ["## Limitations", ""] + [f"- {item}" for item in limitations] + [""]

    lines += ["## Base model and license", ""]
    lines += [f"- Base model: {base}", f"- License: {model_license}", ""]

    dirty = {True: "yes", False: "no", None: UNKNOWN}[lineage.git_dirty]
    lines += ["## Lineage", ""]
    lines += _table(
        ["field", "value"],
        [
            ["git commit", f"`{lineage.git_commit}`"],
            ["working tree dirty", dirty],
            ["MLflow run", f"`{run_id}`" if run_id else UNKNOWN],
            ["config hash", f"`{lineage.config_hash}`"],
            ["model fingerprint", f"`{lineage.model_fingerprint}`"],
            ["data version", f"`{lineage.data_version}`"],
        ],
    )
    if lineage.git_dirty:
        lines += ["", "⚠ Trained from a working tree with uncommitted changes."]
    return "\n".join(lines).rstrip() + "\n"


def render_model_card(
    *,
    settings: Settings,
    version: RegisteredVersion,
    train_report: Mapping[str, Any] | None = None,
    eval_report: Mapping[str, Any] | None = None,
    gates: GateResult | None = None,
    decision: PromotionDecision | None = None,
    intended_use: str = DEFAULT_INTENDED_USE,
    limitations: Sequence[str] = DEFAULT_LIMITATIONS,
) -> str:
    """The card of a registered version.

    Metrics and slices come from ``eval_report`` when given (the version's evaluation metrics
    otherwise); lineage and run id from the version; base model from the train report or
    ``settings.training.base_model``; license from ``settings.model.license``.
    """
    metrics: dict[str, float] = dict(version.eval_metrics)
    slices: dict[str, dict[str, float]] = {}
    if eval_report is not None:
        reported, slices = split_eval_report(eval_report)
        metrics = reported or metrics
    base = (train_report or {}).get("base_model") or settings.training.base_model
    return render_card(
        model_name=version.name,
        version=version.version,
        metrics=metrics,
        lineage=version.lineage,
        gates=gates,
        slices=slices,
        train_report=train_report,
        run_id=version.run_id,
        base_model=str(base) if base else None,
        model_license=settings.model.license,
        decision=decision,
        intended_use=intended_use,
        limitations=limitations,
    )
