"""Loopline: the LLMOps pipeline kit. The domain package never imports Prefect."""

from loopline.runtime import configure_environment

configure_environment()

__version__ = "0.1.0"
