"""The closed-loop demo that ``loopline demo`` (``make demo``) runs after the pipeline.

Users are simulated with the corpus and drift generators; everything else is the product:
the champion served behind the router, the monitor, incidents, and a remediation that
retrains on fresh data and releases through the gates and a canary. The steps:

1. ``loopline up``: the champion behind the local router;
2. ordinary traffic, then a monitor run (expected: no drift);
3. the traffic shifts (other registers, long prompts), then a monitor run: input drift →
   incident → retraining → gates → canary under live traffic → a new champion (or, if the
   new model is not better, an escalated incident with the champion still serving);
4. an A/B test of the first configured experiment (``experiments.experiments``): users with
   ids send requests, rate the replies they get (a user likes a well-formed, complete
   reply), and the experiment flow analyses the logs and acts on its decision;
5. the deployment is stopped unless ``keep_serving``.

``monitor`` and ``experiment`` are passed in, so the CLI can run them as Prefect flows (or
without Prefect).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.config import Settings

Progress = Callable[[str], None]


def _chat(http: Any, model: str, prompt: str) -> int:
    import httpx

    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    try:
        return int(http.post("/v1/chat/completions", json=body).status_code)
    except httpx.HTTPError:
        return 0


def send(url: str, model: str, prompts: Sequence[str]) -> list[int]:
    """Send ``prompts`` one after another; the HTTP status of each (0: no answer)."""
    import httpx

    with httpx.Client(base_url=url, timeout=120, trust_env=False) as http:
        return [_chat(http, model, p) for p in prompts]


@dataclass
class Users:
    """Clients sending ``prompts`` (cycling) from threads until stopped."""

    url: str
    model: str
    prompts: Sequence[str]
    concurrency: int = 3
    pause_s: float = 0.0  # between one client's requests (leaves the laptop CPU to retrain)
    statuses: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, worker: int) -> None:
        import httpx

        with httpx.Client(base_url=self.url, timeout=120, trust_env=False) as http:
            i = worker
            while not self._stop.is_set():
                self.statuses.append(_chat(http, self.model, self.prompts[i % len(self.prompts)]))
                i += self.concurrency
                self._stop.wait(self.pause_s)

    def __enter__(self) -> Users:
        for w in range(self.concurrency):
            t = threading.Thread(target=self._run, args=(w,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(150)


def ab_test(
    settings: Settings,
    url: str,
    experiment: Callable[[], dict[str, Any]],
    *,
    users: int = 160,
    rounds: int = 2,
    progress: Progress = print,
) -> dict[str, Any]:
    """Step 4: start the first configured experiment (under a fresh name: names are never
    reused), send ``rounds`` requests per simulated user, record their ratings in the
    feedback log, and run ``experiment`` (the flow) once."""
    import httpx

    from loopline.experiments.lifecycle import create
    from loopline.monitoring.monitor import monitoring_dir
    from loopline.monitoring.simulation import clean_records
    from loopline.serving.quality import reply_quality

    if not settings.experiments.experiments or settings.experiments.decision is None:
        progress("demo: no experiment configured (experiments.experiments): skipped")
        return {}
    base = settings.experiments.experiments[0]
    spec = base.model_copy(update={"name": f"{base.name}-{time.strftime('%Y%m%d%H%M%S')}"})
    create(settings, spec, progress=progress)
    time.sleep(settings.serving.plan_check_s + 0.5)  # the servers pick the plan up
    prompts = [str(r["prompt"]) for r in clean_records(users * rounds, seed=11)]
    ratings: list[str] = []
    arms: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as http:
        for i, prompt in enumerate(prompts):
            body = {
                "model": settings.model.name,
                "user": f"demo-user-{i % users}",
                "messages": [{"role": "user", "content": prompt}],
            }
            try:
                r = http.post("/v1/chat/completions", json=body)
            except httpx.HTTPError:
                continue
            if r.status_code != 200:
                continue
            arm = r.headers.get("x-loopline-experiments", "-")
            arms[arm] = arms.get(arm, 0) + 1
            text = r.json()["choices"][0]["message"]["content"]
            liked = 1.0 if reply_quality(text) >= 0.9 else 0.0
            ratings.append(json.dumps({"request_id": r.headers["x-request-id"], "rating": liked}))
    feedback = monitoring_dir(settings) / "feedback"
    feedback.mkdir(parents=True, exist_ok=True)
    (feedback / f"{spec.name}.jsonl").write_text("\n".join(ratings) + "\n", encoding="utf-8")
    progress(f"demo: {sum(arms.values())} requests of {users} users in {spec.name}: {arms}")
    out = experiment()
    for result in out.get("experiments", []):
        d = result["decision"]
        progress(
            f"demo: experiment {result['experiment']}: {d['action']} ({'; '.join(d['reasons'])})"
        )
        progress(f"demo: report {result['report_dir']}/report.html")
    return {"experiment": spec.name, "arms": arms, **out}


def run_demo(
    settings: Settings,
    monitor: Callable[[], dict[str, Any]],
    *,
    experiment: Callable[[], dict[str, Any]] | None = None,
    requests: int = 150,
    keep_serving: bool = False,
    progress: Progress = print,
) -> dict[str, Any]:
    """Run steps 1-5 of the module docstring; returns what happened."""
    from loopline.deploy.service import down, up
    from loopline.monitoring.simulation import clean_records, drifted_records

    stack = up(settings, progress=progress)
    assert stack.router is not None and stack.stable is not None
    url, model = stack.router.url, settings.model.name
    started = time.time()
    out: dict[str, Any] = {"champion_before": stack.stable.version}
    try:
        clean = [str(r["prompt"]) for r in clean_records(requests, seed=int(started) % 10_000)]
        progress(f"demo: {len(clean)} ordinary requests to v{stack.stable.version}")
        out["clean_statuses"] = _count(send(url, model, clean))
        out["monitor_clean"] = monitor()
        progress(f"demo: monitor on ordinary traffic: {out['monitor_clean'].get('drift')}")

        mix = {"register": 1.0, "long_prompt": 1.0}
        shifted = [str(r["prompt"]) for r in drifted_records(requests, seed=7, mix=mix)]
        progress(f"demo: the traffic shifts: {len(shifted)} requests in other registers")
        out["drift_statuses"] = _count(send(url, model, shifted))
        # The window holds both halves; the shifted one is enough to be detected. The users
        # during the remediation send prompts that do not repeat: repeats would come from
        # the stable server's warm response cache, and the canary would compare cached
        # answers with the candidate's generated ones.
        more = [str(r["prompt"]) for r in drifted_records(3000, seed=8, mix=mix)]
        with Users(
            url, model, more, concurrency=2, pause_s=0.3
        ) as users:  # users keep coming during the canary
            out["monitor_drift"] = monitor()
        out["statuses_during_remediation"] = _count(users.statuses)
        from loopline.deploy.stack import load_stack

        after = load_stack(settings).stable
        out["champion_after"] = after.version if after is not None else None
        progress(
            f"demo: champion v{out['champion_before']} -> v{out['champion_after']} "
            f"({out['statuses_during_remediation']} during the remediation)"
        )
        if experiment is not None:
            out["ab_test"] = ab_test(settings, url, experiment, progress=progress)
    finally:
        if not keep_serving:
            down(settings)
    return out


def _count(statuses: Sequence[int]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[str(s)] = counts.get(str(s), 0) + 1
    return counts
