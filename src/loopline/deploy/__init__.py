"""Local deployments: processes, the router, the release driver (see docs/architecture.md)."""
