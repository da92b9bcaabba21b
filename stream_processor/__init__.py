"""The stream processor: a Faust worker turning wearmon.samples into predictions.

Modules: :mod:`.app` (the Faust app, built from Settings), :mod:`.processor` (per-device
windowing, micro-batching, the batch cycle and checkpoints), :mod:`.sinks` (Redis keys and
idempotent writes), :mod:`.models` (the served model and hot-swap), :mod:`.deadletter`,
:mod:`.metrics`, :mod:`.watch`. Nothing here connects or loads anything at import time.
"""
