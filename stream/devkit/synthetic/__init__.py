"""The one home of skewwatch's synthetic data, used by the tests, the benches, the examples and the
demo: `scenarios` (seeded generic streams with known change points: the scenario suite, the engine
and budget benches) and `credit` (a credit-risk model with its training set and the incident traffic
of the demo and the walk-through)."""

__all__: list[str] = []
