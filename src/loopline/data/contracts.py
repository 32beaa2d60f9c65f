"""The dataset contract, checked with Great Expectations (1.x, ephemeral context).

For every file (or in-memory frame) the suite checks:

* rows: at least one;
* schema: the required columns exist (``ticket_id``, ``prompt``, ``intent``, ``reply``, and
  ``split`` for prepared splits);
* types and nulls: the required columns hold strings and no missing values;
* lengths: ``prompt`` is 1..``max_prompt_chars``, ``reply`` 1..``max_reply_chars``, neither is
  blank;
* labels: ``intent`` is in ``INTENTS``; ``split`` names the file's split;
* duplicates: ``ticket_id`` is unique within and across files, and no normalised prompt appears
  in more than one split (a derived column counts the splits sharing each prompt);
* personal data: the email, phone, card and name patterns of ``loopline.data.pii`` match
  nothing in the text and customer columns.

Structural problems GX cannot run on (missing or empty file, unreadable JSON) are reported in
the same way. ``DataValidationError`` lists every failed check on its own line. Validation
writes nothing to disk: the GX context is ephemeral, built once per process and reused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from loopline.config import Settings
from loopline.data.corpus import CUSTOMER_COLUMNS, INTENTS
from loopline.data.io import DatasetError, read_dataset
from loopline.data.pii import CARD_PATTERN, EMAIL_PATTERN, NAME_LIST_PATTERN, PHONE_PATTERN
from loopline.data.splits import SPLITS, normalise_prompt

BASE_REQUIRED: tuple[str, ...] = ("ticket_id", "prompt", "intent", "reply")
STRING_COLUMNS: tuple[str, ...] = (*BASE_REQUIRED, "split")
MAX_ID_CHARS = 64
EXAMPLES = 3  # unexpected values quoted per failed check

# Patterns that must not match redacted text, and how messages name what they found.
PII_CHECKS: Mapping[str, tuple[str, str]] = {
    "EMAIL": (EMAIL_PATTERN, "an email address"),
    "PHONE": (PHONE_PATTERN, "a phone number"),
    "CARD": (CARD_PATTERN, "a card-like number"),
    "NAME": (NAME_LIST_PATTERN, "a person's name"),
}


class CheckResult(BaseModel):
    """The outcome of one expectation (or structural check) on one source."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str  # a file name or frame key; several, comma-separated, for a passed check
    check: str  # e.g. "required_column", "label_set", "split_leakage", "pii", "readable"
    expectation: str  # the GX expectation type, or "file_readable" for structural checks
    column: str | None = None
    success: bool
    message: str = ""
    observed: str | int | float | None = None
    unexpected_count: int | None = None
    examples: tuple[str, ...] = ()


class ValidationReport(BaseModel):
    """Every check that ran, and whether all of them passed (JSON-serialisable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    success: bool
    results: tuple[CheckResult, ...] = ()
    rows: dict[str, int] = Field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if not r.success)

    def summary(self) -> str:
        if self.success:
            total = sum(self.rows.values())
            return f"data contract passed: {len(self.results)} checks on {total} rows"
        lines = [f"data contract failed: {len(self.failures)} check(s) failed"]
        lines += [f"  {r.message}" for r in self.failures]
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.success:
            raise DataValidationError(self)


class DataValidationError(ValueError):
    """Data broke its contract. ``str()`` lists every failed check, one per line."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.summary())


# -- GX plumbing -------------------------------------------------------------------------

_lock = threading.Lock()
_gx_state: tuple[Any, Any] | None = None  # (gx module, batch definition)


def _gx() -> tuple[Any, Any]:
    """The GX module and a whole-dataframe batch definition on a cached ephemeral context."""
    global _gx_state
    if _gx_state is None:
        from loopline.runtime import configure_environment

        configure_environment()  # GX_ANALYTICS_ENABLED=false before the import
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = context.data_sources.add_pandas(name="loopline")
        asset = source.add_dataframe_asset(name="tickets")
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        _gx_state = (gx, batch_definition)
    return _gx_state


def _reset_gx_cache() -> None:
    """Forget the cached context (tests use it to observe a fresh start)."""
    global _gx_state
    with _lock:
        _gx_state = None
        _suite_cache.clear()


# -- planning the suite ------------------------------------------------------------------

_SOURCE = "__source"
_EXPECTED_SPLIT = "__expected_split"
_SPLITS_SHARING = "__splits_sharing_prompt"
_DERIVED_COLUMN_OF = {_SPLITS_SHARING: "prompt", _EXPECTED_SPLIT: "split", _SOURCE: None}


@dataclass(frozen=True)
class _Source:
    name: str  # how messages refer to it: a file name or a frame key
    split: str | None  # the split the file holds, when known
    frame: pd.DataFrame

    @property
    def required(self) -> tuple[str, ...]:
        return BASE_REQUIRED + (("split",) if self.split is not None else ())


@dataclass(frozen=True)
class _Planned:
    """One expectation to run: our check name, the GX class name and its (frozen) kwargs."""

    check: str
    expectation: str
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def column(self) -> str | None:
        raw = dict(self.kwargs).get("column", dict(self.kwargs).get("column_A"))
        if raw in _DERIVED_COLUMN_OF:
            return _DERIVED_COLUMN_OF[raw]
        return None if raw is None else str(raw)

    def build(self, gx: Any, order: int) -> Any:
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}
        cls = getattr(gx.expectations, self.expectation)
        return cls(meta={"check": self.check, "order": order}, **kwargs)


def _planned(check: str, expectation: str, **kwargs: Any) -> _Planned:
    frozen = tuple(
        sorted((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in kwargs.items())
    )
    return _Planned(check, expectation, frozen)


def _is_text(series: pd.Series) -> bool:
    return bool(pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series))


def _same_schema(sources: list[_Source]) -> bool:
    columns = {tuple(sorted(map(str, s.frame.columns))) for s in sources}
    return len(columns) == 1 and len({s.required for s in sources}) == 1


def _combine(sources: list[_Source]) -> pd.DataFrame:
    """All sources in one frame with a source column and the derived cross-file columns."""
    parts = []
    for src in sources:
        extra: dict[str, Any] = {_SOURCE: src.name}
        if src.split is not None and "split" in src.frame.columns:
            extra[_EXPECTED_SPLIT] = src.split
        parts.append(src.frame.assign(**extra))
    combined = pd.concat(parts, ignore_index=True, sort=False)
    if "prompt" in combined.columns:
        by_source = {s.name: s.split for s in sources}
        labels = combined[_SOURCE].map(by_source)
        if "split" in combined.columns:
            labels = labels.fillna(combined["split"])
        labels = labels.fillna(combined[_SOURCE]).astype(str)
        is_text = combined["prompt"].map(lambda v: isinstance(v, str))
        if labels[is_text].nunique() > 1:
            norm = combined.loc[is_text, "prompt"].map(normalise_prompt)
            shared = labels[is_text].groupby(norm).transform("nunique")
            combined[_SPLITS_SHARING] = shared.reindex(combined.index)
    return combined


def _plan(combined: pd.DataFrame, sources: list[_Source], settings: Settings) -> list[_Planned]:
    cfg = settings.data
    plan: list[_Planned] = []
    if len(sources) == 1:
        plan.append(_planned("row_count", "ExpectTableRowCountToBeBetween", min_value=1))
    else:
        names = [s.name for s in sources]
        plan.append(
            _planned(
                "row_count",
                "ExpectColumnDistinctValuesToContainSet",
                column=_SOURCE,
                value_set=names,
            )
        )
    if _same_schema(sources):
        for col in sources[0].required:
            plan.append(_planned("required_column", "ExpectColumnToExist", column=col))
    present = [c for c in STRING_COLUMNS if c in combined.columns]
    for col in present:
        plan.append(_planned("not_null", "ExpectColumnValuesToNotBeNull", column=col))
        plan.append(
            _planned("string_type", "ExpectColumnValuesToBeOfType", column=col, type_="str")
        )
    text_cols = [c for c in present if _is_text(combined[c])]
    limits = {
        "prompt": cfg.max_prompt_chars,
        "reply": cfg.max_reply_chars,
        "ticket_id": MAX_ID_CHARS,
        "intent": MAX_ID_CHARS,
    }
    for col in text_cols:
        if col in limits:
            plan.append(
                _planned(
                    "length",
                    "ExpectColumnValueLengthsToBeBetween",
                    column=col,
                    min_value=1,
                    max_value=limits[col],
                )
            )
        if col in ("prompt", "reply"):
            plan.append(
                _planned("blank", "ExpectColumnValuesToNotMatchRegex", column=col, regex=r"^\s*$")
            )
    if "intent" in text_cols:
        plan.append(
            _planned("label_set", "ExpectColumnValuesToBeInSet", column="intent", value_set=INTENTS)
        )
    if "split" in text_cols:
        plan.append(
            _planned("split_name", "ExpectColumnValuesToBeInSet", column="split", value_set=SPLITS)
        )
        if _EXPECTED_SPLIT in combined.columns:
            plan.append(
                _planned(
                    "split_name",
                    "ExpectColumnPairValuesToBeEqual",
                    column_A="split",
                    column_B=_EXPECTED_SPLIT,
                    ignore_row_if="either_value_is_missing",
                )
            )
    if "ticket_id" in combined.columns:
        plan.append(_planned("unique", "ExpectColumnValuesToBeUnique", column="ticket_id"))
    for col in ("prompt", "reply", *CUSTOMER_COLUMNS):
        if col in combined.columns and _is_text(combined[col]):
            # one expectation per column for all patterns: each costs a graph build in GX
            plan.append(
                _planned(
                    "pii",
                    "ExpectColumnValuesToNotMatchRegexList",
                    column=col,
                    regex_list=[pattern for pattern, _ in PII_CHECKS.values()],
                )
            )
    if _SPLITS_SHARING in combined.columns:
        plan.append(
            _planned(
                "split_leakage",
                "ExpectColumnValuesToBeBetween",
                column=_SPLITS_SHARING,
                max_value=1,
            )
        )
    return plan


_suite_cache: dict[tuple[_Planned, ...], Any] = {}
_SUITE_CACHE_SIZE = 32


def _suite(gx: Any, plan: list[_Planned]) -> Any:
    """The GX suite for ``plan``; built once per distinct plan (building costs ~5 ms/check)."""
    key = tuple(plan)
    suite = _suite_cache.get(key)
    if suite is None:
        if len(_suite_cache) >= _SUITE_CACHE_SIZE:
            _suite_cache.clear()
        suite = gx.ExpectationSuite(name=f"loopline-contract-{len(_suite_cache)}")
        for order, item in enumerate(plan):
            suite.add_expectation(item.build(gx, order))
        _suite_cache[key] = suite
    return suite


# -- turning GX results into messages --------------------------------------------------------


def _short(value: Any, limit: int = 60) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    return f"{value!r} ({type(value).__name__})"


def _row_ref(frame: pd.DataFrame, index: Any) -> str:
    tid = frame.at[index, "ticket_id"] if "ticket_id" in frame.columns else None
    return f"ticket_id {tid!r}" if isinstance(tid, str) else f"row {index}"


def _describe(
    item: _Planned,
    n: int,
    rows: list[Any],
    combined: pd.DataFrame,
    src: _Source,
) -> tuple[str, tuple[str, ...]]:
    """A one-line explanation of a map check that failed on ``n`` rows of ``src``."""
    check, column = item.check, item.column
    col = f"column '{column}'"
    sample = rows[:EXAMPLES]
    refs = tuple(_row_ref(combined, i) for i in sample)

    def values(name: str | None = column) -> tuple[str, ...]:
        distinct = dict.fromkeys(_short(combined.at[i, name]) for i in rows[: EXAMPLES * 10])
        return tuple(distinct)[:EXAMPLES]

    if check == "not_null":
        return f"{col}: {n} null value(s), e.g. at {', '.join(refs)}", refs
    if check == "string_type":
        return f"{col}: {n} value(s) are not strings, e.g. {', '.join(values())}", values()
    if check == "length":
        hi = dict(item.kwargs)["max_value"]
        ex = tuple(
            f"{r} has {len(str(combined.at[i, column]))} chars"
            for r, i in zip(refs, sample, strict=True)
        )
        return f"{col}: {n} value(s) empty or longer than {hi} characters, e.g. {'; '.join(ex)}", ex
    if check == "blank":
        return f"{col}: {n} blank value(s), e.g. at {', '.join(refs)}", refs
    if check == "label_set":
        return f"{col}: {n} value(s) not in label set, e.g. {', '.join(values())}", values()
    if check == "split_name":
        expected = f"'{src.split}'" if src.split else f"one of {list(SPLITS)}"
        return f"{col}: {n} value(s) are not {expected}, e.g. {', '.join(values())}", values()
    if check == "unique":
        ids = combined["ticket_id"].astype(str)
        dups: list[str] = []
        for i in sample:
            tid = ids.at[i]
            others = sorted(set(combined.loc[ids == tid, _SOURCE]) - {src.name})
            dups.append(_short(tid) + (f" (also in {', '.join(others)})" if others else ""))
        return f"{col}: {n} duplicated value(s), e.g. {', '.join(dups)}", tuple(dups)
    if check == "split_leakage":
        ex = values("prompt")
        return (
            f"{col}: {n} prompt(s) also appear (normalised) in another split "
            f"(split leakage), e.g. {', '.join(ex)}",
            ex,
        )
    if check == "pii":
        # never quote the personal data itself: name its kind and point at the rows
        texts = combined.loc[rows, column].astype(str)
        kinds = [
            f"{int(texts.str.contains(pattern).sum())} with {what}"
            for pattern, what in PII_CHECKS.values()
            if texts.str.contains(pattern).any()
        ]
        return (
            f"{col}: {n} value(s) contain personal data left after redaction "
            f"({', '.join(kinds)}), e.g. at {', '.join(refs)}",
            refs,
        )
    return f"{col}: {n} value(s) failed {item.expectation}", refs


def _plain(value: Any) -> str | int | float | None:
    if value is None or isinstance(value, str | int | float):
        return value
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


def _attribute(
    item: _Planned,
    result: Any,
    combined: pd.DataFrame,
    sources: list[_Source],
) -> list[CheckResult]:
    """Per-source failures for one failed expectation (run with result_format COMPLETE)."""
    detail: dict[str, Any] = dict(result.result or {})
    exception = result.exception_info or {}
    column = item.column
    gx_type = str(result.expectation_config.type)

    def fail(src: str, text: str, **kw: Any) -> CheckResult:
        return CheckResult(
            source=src,
            check=item.check,
            expectation=gx_type,
            column=column,
            success=False,
            message=f"{src}: {text}",
            **kw,
        )

    if exception.get("raised_exception"):
        text = f"could not run {gx_type} on column '{column}': {exception.get('exception_message')}"
        return [fail(", ".join(s.name for s in sources), text)]
    if item.check == "row_count":
        if item.expectation == "ExpectTableRowCountToBeBetween":
            observed = _plain(detail.get("observed_value"))
            return [fail(sources[0].name, f"table has {observed} rows, expected at least 1")]
        seen = set(combined[_SOURCE]) if _SOURCE in combined.columns else set()
        return [
            fail(s.name, "table has 0 rows, expected at least 1", observed=0)
            for s in sources
            if s.name not in seen
        ]
    if item.check == "required_column":
        return [fail(s.name, f"missing required column '{column}'") for s in sources]
    if item.check == "string_type" and "unexpected_index_list" not in detail:
        dtype = _plain(detail.get("observed_value"))
        return [
            fail(s.name, f"column '{column}': expected strings, column has dtype {dtype}")
            for s in sources
            if column in s.frame.columns
        ] or [fail(sources[0].name, f"column '{column}': expected strings, got dtype {dtype}")]

    rows = list(detail.get("unexpected_index_list") or [])
    owners = combined.loc[rows, _SOURCE] if rows else pd.Series(dtype=object)
    out = []
    for src in sources:
        mine = [r for r, owner in zip(rows, owners, strict=True) if owner == src.name]
        if not mine or (column is not None and column not in src.frame.columns):
            continue  # a missing column is reported once, by the schema check
        text, examples = _describe(item, len(mine), mine, combined, src)
        out.append(fail(src.name, text, unexpected_count=len(mine), examples=examples))
    if not out and not rows:  # GX failed without rows we can attribute: report it as is
        count = detail.get("unexpected_count")
        text = f"column '{column}': {item.expectation} failed ({count} unexpected)"
        out.append(fail(", ".join(s.name for s in sources), text))
    return out


def _check_schema(gx: Any, batch_definition: Any, sources: list[_Source]) -> list[CheckResult]:
    """Required columns, per source; only needed when the sources' columns differ."""
    results: list[CheckResult] = []
    for src in sources:
        suite = gx.ExpectationSuite(name=f"loopline-schema-{src.name}")
        for order, col in enumerate(src.required):
            item = _planned("required_column", "ExpectColumnToExist", column=col)
            suite.add_expectation(item.build(gx, order))
        batch = batch_definition.get_batch(batch_parameters={"dataframe": src.frame.head(0)})
        outcome = batch.validate(suite, result_format="BOOLEAN_ONLY")
        for r in sorted(outcome.results, key=lambda r: int(r.expectation_config.meta["order"])):
            col = str(r.expectation_config.kwargs["column"])
            message = "" if r.success else f"{src.name}: missing required column '{col}'"
            results.append(
                CheckResult(
                    source=src.name,
                    check="required_column",
                    expectation=str(r.expectation_config.type),
                    column=col,
                    success=bool(r.success),
                    message=message,
                )
            )
    return results


def _check_sources(
    gx: Any, batch_definition: Any, sources: list[_Source], settings: Settings
) -> list[CheckResult]:
    results: list[CheckResult] = []
    if not _same_schema(sources):
        results += _check_schema(gx, batch_definition, sources)
    combined = _combine(sources)
    plan = _plan(combined, sources, settings)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": combined})
    # Fast path: pass/fail only. Details (row indices, values) only for what failed.
    quick = batch.validate(_suite(gx, plan), result_format="BOOLEAN_ONLY")
    passed = {int(r.expectation_config.meta["order"]): bool(r.success) for r in quick.results}
    failed = [i for i in range(len(plan)) if not passed.get(i, False)]
    details: dict[int, Any] = {}
    if failed:
        suite = gx.ExpectationSuite(name="loopline-contract-details")
        for i in failed:
            suite.add_expectation(plan[i].build(gx, i))
        outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
        details = {int(r.expectation_config.meta["order"]): r for r in outcome.results}
    everywhere = ", ".join(s.name for s in sources)
    for i, item in enumerate(plan):
        if i in details:
            results += _attribute(item, details[i], combined, sources)
        else:
            results.append(
                CheckResult(
                    source=everywhere,
                    check=item.check,
                    expectation=_gx_type(item.expectation),
                    column=item.column,
                    success=True,
                )
            )
    return results


def _gx_type(class_name: str) -> str:
    """``ExpectColumnToExist`` -> ``expect_column_to_exist`` (the GX expectation type)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in class_name).lstrip("_")


def _run(
    sources: list[_Source],
    settings: Settings,
    structural: list[CheckResult],
    raise_on_failure: bool,
    started: float,
) -> ValidationReport:
    results = list(structural)
    if sources:
        with _lock:
            gx, batch_definition = _gx()
            results += _check_sources(gx, batch_definition, sources, settings)
    report = ValidationReport(
        success=all(r.success for r in results),
        results=tuple(results),
        rows={s.name: len(s.frame) for s in sources},
        elapsed_s=time.perf_counter() - started,
    )
    if raise_on_failure:
        report.raise_for_failures()
    return report


def _structural(source: str, message: str) -> CheckResult:
    return CheckResult(
        source=source,
        check="readable",
        expectation="file_readable",
        success=False,
        message=f"{source}: {message}",
    )


def validate_prepared(
    frames: Mapping[str, pd.DataFrame], settings: Settings, *, raise_on_failure: bool = True
) -> ValidationReport:
    """Check prepared splits keyed by split name (``train``, ``val``, ``test``).

    Raises ``DataValidationError`` listing every failure unless ``raise_on_failure=False``.
    """
    started = time.perf_counter()
    structural = [
        _structural(split, f"split '{split}' is missing") for split in SPLITS if split not in frames
    ]
    sources = [
        _Source(name, name if name in SPLITS else None, frame.reset_index(drop=True))
        for name, frame in frames.items()
    ]
    return _run(sources, settings, structural, raise_on_failure, started)


def validate_frame(
    frame: pd.DataFrame, settings: Settings, *, name: str = "data", raise_on_failure: bool = True
) -> ValidationReport:
    """Check one frame (raw tickets or a single split; ``split`` is optional here)."""
    started = time.perf_counter()
    split = name if name in SPLITS else None
    source = _Source(name, split, frame.reset_index(drop=True))
    return _run([source], settings, [], raise_on_failure, started)


def validate_path(
    path: Path | str, settings: Settings, *, raise_on_failure: bool = True
) -> ValidationReport:
    """Check a prepared directory (its three split files) or a single dataset file.

    A file named after a split (``test.jsonl``) must hold a ``split`` column naming it; any
    other file (the raw ``tickets.jsonl``) is checked without one. Missing, empty and
    unreadable files are reported like failed expectations.
    """
    started = time.perf_counter()
    path = Path(path)
    structural: list[CheckResult] = []
    sources: list[_Source] = []
    if path.is_dir():
        candidates = [path / f"{split}.jsonl" for split in SPLITS]
    elif path.exists() or path.suffix:
        candidates = [path]
    else:
        candidates = []
        structural.append(_structural(str(path), "no such file or directory"))
    for file in candidates:
        try:
            frame = read_dataset(file)
        except DatasetError as exc:
            where = f":{exc.line}" if exc.line is not None else ""
            structural.append(_structural(f"{file.name}{where}", exc.reason))
            continue
        split = file.stem if file.stem in SPLITS else None
        sources.append(_Source(file.name, split, frame.reset_index(drop=True)))
    return _run(sources, settings, structural, raise_on_failure, started)
