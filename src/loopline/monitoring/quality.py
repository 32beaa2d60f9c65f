"""Quality of the served model: golden probes scored against references, label-free scores.

``QualityCheck`` (pure) compares a score with its baseline. Baselines are per model version
and source: the first measurement with at least ``min_samples`` samples after a version
starts serving becomes its baseline (``baselines.json`` in the monitoring state), so a
version is compared with itself on the same probes and the same kind of traffic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loopline.fsutil import write_json
from loopline.monitoring.policy import QualityPolicy

PROBE_VARIANT = "probe"  # requests the monitor sends; excluded from the monitoring window


@dataclass(frozen=True)
class QualityCheck:
    source: str  # "probes" | "label_free"
    version: str
    score: float | None
    baseline: float | None
    samples: int
    dropped: bool
    reason: str
    floor: float | None = None  # the score under which quality has dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_quality(
    source: str,
    version: str,
    scores: Sequence[float],
    baseline: float | None,
    policy: QualityPolicy,
) -> QualityCheck:
    """Has the mean of ``scores`` dropped more than ``policy.max_drop`` below ``baseline``?"""
    n = len(scores)
    floor = None if baseline is None else baseline * (1.0 - policy.max_drop)
    if n < policy.min_samples:
        return QualityCheck(
            source,
            version,
            None,
            baseline,
            n,
            False,
            f"{n} samples < {policy.min_samples}",
            floor,
        )
    score = float(sum(scores) / n)
    if baseline is None or floor is None:
        return QualityCheck(source, version, score, None, n, False, "no baseline yet")
    dropped = score < floor
    reason = (
        f"{source} quality {score:.3f} < {floor:.3f} ({policy.max_drop:.0%} below baseline "
        f"{baseline:.3f})"
        if dropped
        else f"{source} quality {score:.3f} within {policy.max_drop:.0%} of {baseline:.3f}"
    )
    return QualityCheck(source, version, score, baseline, n, dropped, reason, floor)


class Baselines:
    """Per version and source baseline scores in a JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, float]]:
        if not self.path.is_file():
            return {}
        data = json.loads(self.path.read_text("utf-8"))
        return {str(v): {str(s): float(x) for s, x in d.items()} for v, d in data.items()}

    def get(self, version: str, source: str) -> float | None:
        return self.load().get(version, {}).get(source)

    def set_if_missing(self, version: str, source: str, score: float) -> float:
        data = self.load()
        current = data.setdefault(version, {}).get(source)
        if current is not None:
            return current
        data[version][source] = score
        write_json(data, self.path)
        return score


def probe_scores(
    url: str, golden: Sequence[tuple[str, str]], model: str, n: int, *, timeout: float = 60.0
) -> list[float]:
    """Send ``n`` golden prompts (cycling) to the server at ``url`` and score each reply
    against its reference with ROUGE-L F; failed requests are skipped (the error-rate alerts
    count those)."""
    import httpx

    from loopline.evaluation.metrics import rouge_l_scores
    from loopline.models.prompting import parse_output

    replies: list[str] = []
    refs: list[str] = []
    with httpx.Client(timeout=timeout, trust_env=False) as http:
        for i in range(min(n, max(len(golden), 1) * 4) if golden else 0):
            prompt, reference = golden[i % len(golden)]
            body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
            try:
                resp = http.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"x-loopline-variant": PROBE_VARIANT},
                )
            except httpx.HTTPError:
                continue
            if resp.status_code != 200:
                continue
            text = resp.json()["choices"][0]["message"]["content"] or ""
            replies.append(parse_output(text).reply)
            refs.append(reference)
    return rouge_l_scores(replies, refs) if replies else []
