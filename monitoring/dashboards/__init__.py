"""Grafana dashboards as code (grafana-foundation-sdk), their JSON, renders and upload.

One module per dashboard (``pipeline``, ``predictions``, ``drift``, ``participant``), each
with a ``build()``; :mod:`monitoring.dashboards.generate` writes them to
``deploy/grafana/dashboards/*.json``. See docs/dashboards.md.
"""
