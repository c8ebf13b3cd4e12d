"""Flows on top of the generator: synthesis, the sweep, benchmarks, the analytic model."""
