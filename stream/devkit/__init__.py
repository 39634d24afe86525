"""Tooling for development, tests, benchmarks and the demo: the embedded Kafka-protocol broker,
helpers that start and stop worker processes, the synthetic data, and `skewwatch demo`."""
from __future__ import annotations

__all__: list[str] = []
