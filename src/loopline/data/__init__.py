"""Synthetic support-ticket corpus, PII redaction, leak-free splits and the dataset contract.

Importing this package is cheap: its exports load on first use, and Great Expectations only
when a contract check runs (``loopline.data.contracts``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopline.lazy import lazy_getattr

# Exports load on first use (PEP 562): the server and router import the PII and corpus
# modules only, and should not pay for pandas-heavy preparation and contract code.
_EXPORTS: dict[str, str] = {
    "CORPUS_COLUMNS": "loopline.data.corpus",
    "CheckResult": "loopline.data.contracts",
    "DRIFT_KINDS": "loopline.data.drift",
    "DataValidationError": "loopline.data.contracts",
    "DatasetError": "loopline.data.io",
    "INTENTS": "loopline.data.corpus",
    "NEW_INTENTS": "loopline.data.drift",
    "PREPARED_COLUMNS": "loopline.data.prepare",
    "PiiHit": "loopline.data.pii",
    "RedactionStats": "loopline.data.pii",
    "SPLITS": "loopline.data.splits",
    "ValidationReport": "loopline.data.contracts",
    "find_pii": "loopline.data.pii",
    "generate_drifted_traffic": "loopline.data.drift",
    "generate_raw": "loopline.data.prepare",
    "generate_tickets": "loopline.data.corpus",
    "normalise_prompt": "loopline.data.splits",
    "prepare": "loopline.data.prepare",
    "read_dataset": "loopline.data.io",
    "read_prepared": "loopline.data.io",
    "redact_frame": "loopline.data.pii",
    "redact_text": "loopline.data.pii",
    "split_for": "loopline.data.splits",
    "validate_frame": "loopline.data.contracts",
    "validate_path": "loopline.data.contracts",
    "validate_prepared": "loopline.data.contracts",
}


__getattr__ = lazy_getattr(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
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
