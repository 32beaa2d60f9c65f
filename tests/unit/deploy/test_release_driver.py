"""The release driver over a scripted in-memory target (Loopline's own Target protocol):
event order, failures turned into rollbacks, aborts, start-up timeouts, a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from loopline.deploy.driver import DriverOptions, run_release
from loopline.release.analysis import ArmMetrics, CanaryVerdict, StepMetrics
from loopline.release.policy import CanaryAnalysisPolicy, CanaryPolicy, ReleaseConfig
from loopline.release.records import DeploymentRecord, ReleaseSpec, StepRecord

SPEC = ReleaseSpec("rel-1", candidate_version="2", stable_version="1", requested_by="test")
ANALYSIS = CanaryAnalysisPolicy(
    error_rate_margin=0.1, latency_tail_margin=0.3, quality_margin=0.15, min_samples=30
)
CONFIG = ReleaseConfig(
    canary=CanaryPolicy(
        steps=(20, 100), min_requests_per_step=50, min_step_seconds=0, analysis=ANALYSIS
    )
)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ScriptedTarget:
    """Serves ``per_poll`` requests per arm and poll; errors as scripted."""

    clock: Clock
    candidate_error_rate: float = 0.0
    ready_after: int = 1
    fail_on: str | None = None
    calls: list[str] = field(default_factory=list)
    polls: int = 0
    records: list[StepRecord] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_on:
            raise RuntimeError(f"{name} broke")

    def start_candidate(self, version: str) -> None:
        self._call("start_candidate")

    def warmup(self, version: str, requests: int) -> None:
        self._call("warmup")

    def set_weights(self, stable: float, candidate: float) -> None:
        self._call(f"set_weights({candidate:g})")

    def mirror(self, percent: float) -> None:
        self._call(f"mirror({percent:g})")

    def stop_candidate(self, version: str) -> None:
        self._call("stop_candidate")

    def promote(self, version: str) -> None:
        self._call("promote")

    def rollback(self, reason: str) -> None:
        self._call("rollback")

    def record_step(self, release_id: str, record: StepRecord) -> None:
        self.records.append(record)

    def candidate_health(self) -> str | None:
        self.polls += 1
        return None if self.polls > self.ready_after else "not ready yet"

    def candidate_starting(self) -> bool:
        return True

    def step_metrics(self, step: int, since: float) -> StepMetrics:
        n = int((self.clock.now - since) * 100)
        arm = ArmMetrics(requests=4 * n, quality_count=4 * n, quality_mean=0.8, quality_var=0.01)
        errors = int(n * self.candidate_error_rate)
        cand = ArmMetrics(
            requests=n, errors=errors, quality_count=n, quality_mean=0.8, quality_var=0.01
        )
        return StepMetrics(
            step=step,
            candidate_weight=20,
            stable=arm,
            candidate=cand,
            elapsed_s=self.clock.now - since,
            latency_reference_ms=100.0,
        )

    def warmup_checks(self, step: int) -> CanaryVerdict:
        return CanaryVerdict.from_checks(step, True, ["ok"])

    def bake_checks(self, step: int, since: float) -> CanaryVerdict | None:
        return None


def run(target: ScriptedTarget, clock: Clock, **kw: object) -> DeploymentRecord:
    return run_release(
        CONFIG,
        "canary",
        SPEC,
        target,
        options=DriverOptions(poll_s=1.0, start_timeout_s=5.0),
        clock=clock,
        sleep=clock.sleep,
        **kw,  # type: ignore[arg-type]
    )


def test_good_candidate_walks_the_steps_and_is_promoted() -> None:
    clock = Clock()
    target = ScriptedTarget(clock)
    record = run(target, clock)
    assert record.outcome == "promoted"
    assert target.calls == ["start_candidate", "set_weights(20)", "set_weights(100)", "promote"]
    assert [r.verdict for r in target.records] == ["promote_step"]


def test_errors_roll_back_and_a_failing_target_call_rolls_back_too() -> None:
    clock = Clock()
    target = ScriptedTarget(clock, candidate_error_rate=0.5)
    record = run(target, clock)
    assert record.outcome == "rolled_back"
    assert target.calls[-3:] == ["set_weights(0)", "stop_candidate", "rollback"]

    clock = Clock()
    target = ScriptedTarget(clock, fail_on="set_weights(20)")
    record = run(target, clock)
    assert record.outcome == "rolled_back"
    assert "target failed: SetWeights: set_weights(20) broke" in (record.reason or "")


def test_abort_request_and_start_timeout() -> None:
    clock = Clock()
    target = ScriptedTarget(clock)
    asks = iter([None, ("operator says no", "alice")])
    record = run(target, clock, abort_requested=lambda: next(asks, None))
    assert record.outcome == "aborted"
    assert "manual abort by alice: operator says no" in (record.reason or "")

    clock = Clock()
    target = ScriptedTarget(clock, ready_after=10_000)
    record = run(target, clock)
    assert record.outcome == "rolled_back"
    assert "candidate unhealthy: not ready yet" in (record.reason or "")
    assert clock.now - 1000.0 <= 7.0  # gave up after start_timeout_s
