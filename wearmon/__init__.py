"""wearmon: streaming, real-time monitoring of wrist-worn motion sensors."""

__version__ = "0.1.0"
