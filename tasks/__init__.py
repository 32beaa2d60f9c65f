"""Thin Prefect task wrappers over ``loopline`` functions, grouped by lifecycle stage.

Tasks add retries, names and logging; all logic lives in the ``loopline`` package. DVC is the
cache for the data and training stages, so Prefect's own task caching is off here.
"""
