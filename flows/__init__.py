"""Prefect flows: one per lifecycle. Parameters are pydantic models so the UI renders forms."""
