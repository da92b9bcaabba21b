"""Drift checks, the retraining trigger policy and dashboards (docs/signals.md, "Features").

Not built yet. What it will consume already exists: the live per-window features in the
Redis stream ``feat:live`` (written by the stream processor, names in ``feat:names``), each
model version's reference profile (``trainer.registry.read_reference_profile``), the
promotion gate (``trainer.gate``) and the worker's model hot-swap on the ``champion`` alias.
"""
