"""The local target: stable and candidate as ``loopline serve`` processes behind the router.

Implements :class:`~loopline.release.target.Target` (plus the driver's start-up and
blue/green checks) with real processes on 127.0.0.1: weights and mirroring are changed live
on the router's admin API, step metrics are the router's per-request records (status,
latency, reply quality), promotion moves the registry's ``champion`` alias and the stack file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from loopline.config import Settings
from loopline.deploy.stack import (
    DeployError,
    ServerProc,
    Stack,
    alive,
    deploy_dir,
    load_stack,
    save_stack,
    server_ready,
    start_server,
    stop_pid,
)
from loopline.release.analysis import ArmMetrics, CanaryVerdict, StepMetrics
from loopline.release.records import StepRecord
from loopline.routing.client import ArmRecords, RouterAdmin
from loopline.serving.quality import reply_quality

REFERENCE_WINDOW_S = 120.0
GOLDEN_FIELDS = ("prompt", "reference")
MIN_REFERENCE_REQUESTS = 20


def records_file(settings: Settings) -> Path:
    return deploy_dir(settings) / "records.jsonl"


def append_record(settings: Settings, entry: dict[str, Any]) -> None:
    """Append one line to the deployment log (fsynced; the log is append-only)."""
    path = records_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_records(settings: Settings) -> list[dict[str, Any]]:
    path = records_file(settings)
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.strip():
            out.append(json.loads(raw))
    return out


def load_golden_set(settings: Settings) -> list[tuple[str, str]]:
    """The configured probes as (prompt, reference) pairs; a bad file is a DeployError
    naming the file and line."""
    golden = settings.release.golden
    if golden is None:
        return []
    path = settings.path(golden.path)
    if not path.is_file():
        raise DeployError(f"release.golden.path: {path} does not exist")
    pairs = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            pairs.append((str(item["prompt"]), str(item["reference"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise DeployError(
                f"{path}:{number}: expected a JSON object with {list(GOLDEN_FIELDS)} ({exc})"
            ) from exc
    if not pairs:
        raise DeployError(f"{path}: the golden set is empty")
    return pairs


def _arm_metrics(
    records: ArmRecords | None, reference_ms: float, extra_quality: Sequence[float] = ()
) -> ArmMetrics:
    if records is None or len(records) == 0:
        return ArmMetrics(requests=0)
    quality = records.quality[~np.isnan(records.quality)]
    if extra_quality:
        quality = np.concatenate([quality, np.asarray(extra_quality, dtype=np.float64)])
    return ArmMetrics.from_requests(
        failed=~records.ok,
        latency_ms=records.latency_ms,
        latency_reference_ms=reference_ms,
        quality=quality,
    )


class LocalTarget:
    def __init__(
        self,
        settings: Settings,
        router: RouterAdmin,
        *,
        candidate_set: Sequence[str] = (),
        probe_prompts: Sequence[str] = (),
        promote_version: Callable[[str], str | None] | None = None,
        keep_standby: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.router = router
        self.candidate_set = tuple(candidate_set)
        self.probe_prompts = tuple(probe_prompts)
        self.promote_version = promote_version
        self.keep_standby = keep_standby
        self.clock = clock
        self._references: dict[int, float] = {}
        self._warmup: dict[str, list[tuple[bool, float | None]]] = {}
        self.golden = load_golden_set(settings)
        self.probe_scores: list[tuple[float, str, float]] = []  # (time, arm, ROUGE-L F)
        self._next_probe = 0
        self.weights = (100.0, 0.0)
        self.mirror_percent = 0.0

    # -- stack helpers ------------------------------------------------------------------------
    @property
    def stack(self) -> Stack:
        return load_stack(self.settings)

    def _stable(self) -> ServerProc:
        stable = self.stack.stable
        if stable is None:
            raise DeployError("no stable version is running")
        return stable

    def _candidate(self) -> ServerProc:
        candidate = self.stack.candidate
        if candidate is None:
            raise DeployError("no candidate is running")
        return candidate

    # -- Target -------------------------------------------------------------------------------
    def start_candidate(self, version: str) -> None:
        server = start_server(self.settings, version, "candidate", set_args=self.candidate_set)
        save_stack(self.settings, replace(self.stack, candidate=server))

    def candidate_starting(self) -> bool:
        candidate = self.stack.candidate
        return candidate is not None and alive(candidate.pid)

    def candidate_health(self) -> str | None:
        candidate = self.stack.candidate
        if candidate is None:
            return "no candidate process"
        return server_ready(candidate)

    def warmup(self, version: str, requests: int) -> None:
        """Send the probe prompts to both versions directly (not through the router)."""
        prompts = [self.probe_prompts[i % len(self.probe_prompts)] for i in range(requests)]
        for arm, server in (("stable", self._stable()), ("candidate", self._candidate())):
            results: list[tuple[bool, float | None]] = []
            with httpx.Client(timeout=60.0, trust_env=False) as http:
                for prompt in prompts:
                    variant = "shadow" if arm == "candidate" else arm
                    try:
                        resp = self._ask(http, server.url, prompt, {"x-loopline-variant": variant})
                    except httpx.HTTPError:
                        results.append((False, None))
                        continue
                    if resp.status_code != 200:
                        results.append((False, None))
                        continue
                    text = resp.json()["choices"][0]["message"]["content"] or ""
                    results.append((True, reply_quality(text)))
            self._warmup[arm] = results

    def set_weights(self, stable: float, candidate: float) -> None:
        if candidate > 0:
            state = self.router.state()
            if state.candidate is None:
                self.router.set_backends(self._stable().url, self._candidate().url)
        self.router.set_weight(candidate)
        self.weights = (stable, candidate)

    def mirror(self, percent: float) -> None:
        if percent > 0 and self.router.state().candidate is None:
            self.router.set_backends(self._stable().url, self._candidate().url)
        self.router.set_mirror(percent)
        self.mirror_percent = percent

    def stop_candidate(self, version: str) -> None:
        stack = self.stack
        self.router.set_backends(self._stable().url, None)
        if stack.candidate is not None:
            stop_pid(stack.candidate.pid)
        save_stack(self.settings, replace(self.stack, candidate=None))

    def promote(self, version: str) -> None:
        """The candidate becomes stable: one atomic router switch, then the registry alias,
        then the old stable is retired (or kept as standby for an instant switch back)."""
        stack = self.stack
        candidate, old = self._candidate(), self._stable()
        self.router.switch(candidate.url, None)
        new_stable = replace(candidate, variant="stable")
        standby = old if self.keep_standby else None
        if stack.standby is not None and stack.standby.pid != old.pid:
            stop_pid(stack.standby.pid)
        moved = replace(stack, stable=new_stable, candidate=None, standby=standby)
        save_stack(self.settings, moved)
        if not self.keep_standby:
            stop_pid(old.pid)
        if self.promote_version is not None:
            self.promote_version(version)

    def rollback(self, reason: str) -> None:
        """Traffic and instances are already back on stable; make sure the router agrees."""
        state = self.router.state()
        stable = self._stable()
        if state.stable != stable.url or state.candidate_weight or state.mirror_percent:
            self.router.set_backends(stable.url, None)

    def record_step(self, release_id: str, record: StepRecord) -> None:
        append_record(
            self.settings, {"type": "step", "release_id": release_id, "step": record.to_dict()}
        )

    def _reference(self, step: int, since: float) -> float:
        """The stable p-quantile latency before the step began (fixed for the step)."""
        if step not in self._references:
            q = self.settings.release.canary.analysis.latency_quantile
            before = self.router.stats(since=since - REFERENCE_WINDOW_S, arms=("stable",))
            lat = before["stable"].latency_ms[before["stable"].t < since]
            if lat.size < MIN_REFERENCE_REQUESTS:
                lat = before["stable"].latency_ms  # too little history: the step's own stable
            if lat.size < MIN_REFERENCE_REQUESTS:
                return float(np.quantile(lat, q)) if lat.size else 1e9
            self._references[step] = float(np.quantile(lat, q))
        return self._references[step]

    # -- golden probes ------------------------------------------------------------------------
    def _ask(self, http: httpx.Client, url: str, prompt: str, headers: dict[str, str]) -> Any:
        body = {
            "model": self.settings.model.name,
            "messages": [{"role": "user", "content": prompt}],
        }
        return http.post(f"{url}/v1/chat/completions", json=body, headers=headers)

    def send_probes(self, mirrored: bool) -> None:
        """Send the next ``per_poll`` golden probes and score the replies (ROUGE-L F)."""
        golden = self.settings.release.golden
        if golden is None or not self.golden:
            return
        from loopline.evaluation.metrics import rouge_l_scores
        from loopline.models.prompting import parse_output

        stack = self.stack
        router_url = stack.router.url if stack.router is not None else None
        with httpx.Client(timeout=60.0, trust_env=False) as http:
            for _ in range(golden.per_poll):
                prompt, reference = self.golden[self._next_probe % len(self.golden)]
                self._next_probe += 1
                if mirrored or router_url is None:  # shadow: every probe to both versions
                    targets = [("stable", self._stable().url), ("shadow", self._candidate().url)]
                else:  # canary: through the router, so each version gets its share
                    targets = [("", router_url)]
                for arm, url in targets:
                    variant = {"x-loopline-variant": arm} if arm else {}
                    try:
                        resp = self._ask(http, url, prompt, variant)
                    except httpx.HTTPError:
                        continue  # a transport failure is the router's to count
                    if resp.status_code != 200:
                        continue
                    served_by = arm or resp.headers.get("x-loopline-arm", "stable")
                    text = resp.json()["choices"][0]["message"]["content"] or ""
                    score = rouge_l_scores([parse_output(text).reply], [reference])[0]
                    self.probe_scores.append((self.clock(), served_by, score))

    def _probe_quality(self, arm: str, since: float) -> list[float]:
        return [q for t, a, q in self.probe_scores if a == arm and t >= since]

    def step_metrics(self, step: int, since: float) -> StepMetrics:
        mirrored = self.mirror_percent > 0
        arm = "shadow" if mirrored else "candidate"
        self.send_probes(mirrored)
        stats = self.router.stats(since=since, arms=("stable", arm))
        reference = self._reference(step, since)
        weight = self.mirror_percent if mirrored else self.weights[1]
        return StepMetrics(
            step=step,
            candidate_weight=weight,
            stable=_arm_metrics(
                stats.get("stable"), reference, self._probe_quality("stable", since)
            ),
            candidate=_arm_metrics(stats.get(arm), reference, self._probe_quality(arm, since)),
            elapsed_s=max(0.0, self.clock() - since),
            latency_reference_ms=reference,
            mirrored=mirrored,
        )

    # -- blue/green checks ------------------------------------------------------------------
    def warmup_checks(self, step: int) -> CanaryVerdict:
        margin = self.settings.release.canary.analysis.quality_margin or 0.0
        cand = self._warmup.get("candidate", [])
        stab = self._warmup.get("stable", [])
        failed = sum(1 for ok, _ in cand if not ok)
        reasons = []
        passed = True
        if not cand:
            passed = False
            reasons.append("no warm-up requests reached the candidate")
        if failed:
            passed = False
            reasons.append(f"{failed} of {len(cand)} warm-up requests to the candidate failed")
        cq = [q for ok, q in cand if ok and q is not None]
        sq = [q for ok, q in stab if ok and q is not None]
        if cq and sq:
            c_mean, s_mean = float(np.mean(cq)), float(np.mean(sq))
            limit = s_mean * (1 - margin)
            ok = c_mean >= limit
            passed &= ok
            reasons.append(
                f"quality on {len(cq)} probes: candidate {c_mean:.3f} vs stable {s_mean:.3f} "
                f"(limit {limit:.3f}, margin {margin:.0%}): {'ok' if ok else 'degraded'}"
            )
        return CanaryVerdict.from_checks(step, passed, reasons)

    def bake_checks(self, step: int, since: float) -> CanaryVerdict | None:
        """After the switch: roll back when the candidate's error share exceeds stable's
        share before the switch by more than the margin (over at least 20 requests)."""
        margin = self.settings.release.canary.analysis.error_rate_margin or 0.01
        stats = self.router.stats(since=since - REFERENCE_WINDOW_S, arms=("stable", "candidate"))
        live = stats["candidate"]
        live_ok = live.ok[live.t >= since]
        before = stats["stable"].ok[stats["stable"].t < since]
        if live_ok.size < 20:
            return None
        rate = float(np.mean(~live_ok))
        base = float(np.mean(~before)) if before.size else 0.0
        if rate > base + margin:
            return CanaryVerdict.from_checks(
                step,
                False,
                [f"error share after the switch {rate:.1%} > {base:.1%} before + {margin:.1%}"],
                candidate_weight=100.0,
            )
        return None
