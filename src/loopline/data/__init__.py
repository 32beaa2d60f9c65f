"""Synthetic support-ticket corpus, PII redaction, leak-free splits and the dataset contract.

Importing this package is cheap: Great Expectations is imported only when a contract check
runs (``loopline.data.contracts``).
"""

from __future__ import annotations

from loopline.data.contracts import (
    CheckResult,
    DataValidationError,
    ValidationReport,
    validate_frame,
    validate_path,
    validate_prepared,
)
from loopline.data.corpus import CORPUS_COLUMNS, INTENTS, generate_tickets
from loopline.data.drift import DRIFT_KINDS, NEW_INTENTS, generate_drifted_traffic
from loopline.data.io import DatasetError, read_dataset, read_prepared
from loopline.data.pii import PiiHit, RedactionStats, find_pii, redact_frame, redact_text
from loopline.data.prepare import PREPARED_COLUMNS, generate_raw, prepare
from loopline.data.splits import SPLITS, normalise_prompt, split_for

__all__ = [
    "CORPUS_COLUMNS",
    "DRIFT_KINDS",
    "INTENTS",
    "NEW_INTENTS",
    "PREPARED_COLUMNS",
    "SPLITS",
    "CheckResult",
    "DataValidationError",
    "DatasetError",
    "PiiHit",
    "RedactionStats",
    "ValidationReport",
    "find_pii",
    "generate_drifted_traffic",
    "generate_raw",
    "generate_tickets",
    "normalise_prompt",
    "prepare",
    "read_dataset",
    "read_prepared",
    "redact_frame",
    "redact_text",
    "split_for",
    "validate_frame",
    "validate_path",
    "validate_prepared",
]
