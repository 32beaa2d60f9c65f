"""The generated Dockerfile and .dockerignore (pure text rendering, no I/O).

Layout inside the image::

    /opt/venv                   the Python environment (pinned requirements + the Loopline wheel)
    /opt/loopline/model         the Hugging Face model folder (read-only, owned by root)
    /opt/loopline/app           the project root the server reads its configuration from
    /opt/loopline/MODEL_CHECKSUM, /opt/loopline/manifest.json
    /var/lib/loopline           the only writable place (VOLUME): HOME, caches, request log

The image runs as UID/GID 10001 and writes nothing outside the volume, so it runs with a
read-only root filesystem. Build args: ``BASE_IMAGE`` (a Python 3.11 image with ``python3``,
``venv``, ``groupadd``/``useradd``) and ``TORCH_INDEX_URL`` (where the CPU build of torch comes
from; empty: only ``wheels/`` and the default index).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BASE_IMAGE = "python:3.11-slim"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
UID = 10001
PORT = 8000
VENV = "/opt/venv"
PREFIX = "/opt/loopline"
STATE = "/var/lib/loopline"
MODEL_DIR = f"{PREFIX}/model"
APP_DIR = f"{PREFIX}/app"
REQUEST_LOG = f"{STATE}/requests"
DOCKERIGNORE = ("mlflow-model", "build.log", "*.tmp", ".git")
"""Context entries the image does not need (the tar sent to the Engine API skips them too)."""

RUNTIME_ENV: dict[str, str] = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": STATE,
    "TMPDIR": STATE,
    "XDG_CACHE_HOME": f"{STATE}/cache",
    "HF_HOME": f"{STATE}/cache/huggingface",
    "MPLCONFIGDIR": f"{STATE}/cache/matplotlib",
    "PREFECT_HOME": f"{STATE}/prefect",
    "MLFLOW_TRACKING_URI": f"sqlite:///{STATE}/mlflow.db",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


@dataclass(frozen=True)
class DockerfileSpec:
    """Everything the Dockerfile names: the model, the wheel, the base and the labels."""

    model_name: str
    model_version: str
    fingerprint: str
    wheel: str
    loopline_version: str
    env_name: str = "local"
    base_image: str = DEFAULT_BASE_IMAGE
    offline: bool = False
    created: str = ""
    revision: str = ""
    license: str = ""
    variant: str = "stable"
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    def serve_command(self) -> list[str]:
        """The container's entrypoint: ``loopline serve`` on the packaged model."""
        return [
            "loopline",
            "serve",
            "--project",
            APP_DIR,
            "--model-dir",
            MODEL_DIR,
            "--checksum",
            self.fingerprint,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
            "--variant",
            self.variant,
            "--request-log",
            REQUEST_LOG,
        ]

    def labels(self) -> dict[str, str]:
        labels = {
            "org.opencontainers.image.title": f"{self.model_name} (Loopline model server)",
            "org.opencontainers.image.description": (
                f"Loopline serving image for {self.model_name} version {self.model_version}"
            ),
            "org.opencontainers.image.version": f"{self.model_name}-{self.model_version}",
            "org.opencontainers.image.created": self.created,
            "org.opencontainers.image.revision": self.revision,
            "org.opencontainers.image.licenses": self.license,
            "org.opencontainers.image.vendor": "Loopline",
            "org.opencontainers.image.base.name": self.base_image,
            "io.loopline.version": self.loopline_version,
            "io.loopline.model.name": self.model_name,
            "io.loopline.model.version": self.model_version,
            "io.loopline.model.fingerprint": self.fingerprint,
            "io.loopline.model.uri": f"models:/{self.model_name}/{self.model_version}",
            **self.extra_labels,
        }
        return {k: v for k, v in labels.items() if v}


def _quote(value: str) -> str:
    return json.dumps(value)


def _continued(lines: list[str], indent: str = "    ") -> str:
    return (" \\\n" + indent).join(lines)


def render_dockerfile(spec: DockerfileSpec) -> str:
    """The Dockerfile text for ``spec`` (hadolint clean)."""
    wheels = "/tmp/loopline-build/wheels"
    reqs = "/tmp/loopline-build/requirements.txt"
    if spec.offline:
        sources = f"--no-index --find-links {wheels}"
    else:
        sources = (
            f'--find-links {wheels} ${{TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}}'
        )
    install = (
        f"python3 -m venv {VENV} \\\n"
        f"    && {VENV}/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \\\n"
        f"        {sources} \\\n"
        f"        -r {reqs} {wheels}/{spec.wheel}"
    )
    env_lines = [f"{k}={_quote(v)}" for k, v in RUNTIME_ENV.items()]
    env_lines.append(f"LOOPLINE_ENV={_quote(spec.env_name)}")
    label_lines = [f"{k}={_quote(v)}" for k, v in spec.labels().items()]
    healthcheck = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://127.0.0.1:{PORT}/healthz', timeout=4)"
    )
    entrypoint = json.dumps(spec.serve_command())
    return f"""\
# Generated by loopline.packaging: {spec.model_name} version {spec.model_version}
# (fingerprint {spec.fingerprint}).
# Build from this directory:
#   docker build -t IMAGE .
# torch: requirements.txt pins the CPU build's version. It is taken from a wheel in wheels/
# (found through --find-links) or from TORCH_INDEX_URL (default: the PyTorch CPU index; pass
# --build-arg TORCH_INDEX_URL= to use only wheels/ and the default index). Without either,
# pip would pick the much larger CUDA build from PyPI.
# requirements.txt is the complete dependency closure of the environment that made this
# package (a lock): it is installed with --no-deps, so the image holds exactly those versions.
# Extra arguments to `docker run IMAGE ...` are appended to the serve command and override
# the defaults (the last value of an option wins), e.g. `--variant canary`.
ARG BASE_IMAGE={spec.base_image}

FROM ${{BASE_IMAGE}} AS build
ARG TORCH_INDEX_URL={TORCH_CPU_INDEX}
COPY requirements.txt {reqs}
COPY wheels/ {wheels}/
RUN {install}

FROM ${{BASE_IMAGE}}
LABEL {_continued(label_lines, "      ")}
ENV {_continued(env_lines)}
RUN groupadd --gid {UID} loopline \\
    && useradd --no-log-init --uid {UID} --gid {UID} --home-dir {STATE} \\
        --shell /usr/sbin/nologin loopline \\
    && mkdir -p {STATE} \\
    && chown {UID}:{UID} {STATE}
COPY --from=build {VENV} {VENV}
COPY model/ {MODEL_DIR}/
COPY app/ {APP_DIR}/
COPY MODEL_CHECKSUM manifest.json requirements.txt {PREFIX}/
USER {UID}:{UID}
WORKDIR {STATE}
VOLUME ["{STATE}"]
EXPOSE {PORT}
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\
    CMD ["python", "-c", {json.dumps(healthcheck)}]
ENTRYPOINT {entrypoint}
"""


def render_dockerignore() -> str:
    """The .dockerignore: the context entries the image does not need."""
    return "# Generated by loopline.packaging\n" + "".join(f"{e}\n" for e in DOCKERIGNORE)
