"""Redis keys of the drift monitor, defined once (the lifecycle side imports them from here).

The monitor's own keys share the hash tag ``{monitor}`` (one slot of a Redis Cluster: the
policy's MULTI/EXEC writes two of them):

- ``drift:latest:{monitor}`` hash: the latest check (ts_ms, score, share, drifted, n_windows,
                            model_version, top = JSON of the top features, ...)
- ``drift:hist:{monitor}``  stream of checks, ``MAXLEN ~ HIST_MAXLEN``
- ``policy:state:{monitor}`` string: JSON of the persisted trigger-policy state
- ``policy:log:{monitor}``  stream of policy transitions (from, to, reason, trigger_id, at_ms),
                            ``MAXLEN ~ HIST_MAXLEN``
- ``retrain:{trigger_id}``  hash written by the retraining process (status running|promoted|
                            refused|failed, reason, challenger_version, champion_version,
                            started_ms, finished_ms, run_id); TTL ``RETRAIN_TTL_S``
- ``monitor:cursor:{monitor}`` string: id of the last ``feat:live`` entry a check has read

The live features (``feat:live:{stream}``, ``feat:names``) are written by the stream processor
and the champion channel (``model:champion``) is the workers'; their names are imported, not
copied.
"""

from __future__ import annotations

from stream_processor.models import CHAMPION_CHANNEL
from stream_processor.sinks import FEATURE_NAMES_KEY, FEATURES_KEY

MONITOR_TAG = "{monitor}"
DRIFT_LATEST = f"drift:latest:{MONITOR_TAG}"
DRIFT_HIST = f"drift:hist:{MONITOR_TAG}"
POLICY_STATE = f"policy:state:{MONITOR_TAG}"
POLICY_LOG = f"policy:log:{MONITOR_TAG}"
MONITOR_CURSOR = f"monitor:cursor:{MONITOR_TAG}"
HIST_MAXLEN = 10_000
RETRAIN_TTL_S = 30 * 24 * 3600

__all__ = [
    "CHAMPION_CHANNEL",
    "DRIFT_HIST",
    "DRIFT_LATEST",
    "FEATURES_KEY",
    "FEATURE_NAMES_KEY",
    "HIST_MAXLEN",
    "MONITOR_CURSOR",
    "POLICY_LOG",
    "POLICY_STATE",
    "RETRAIN_TTL_S",
    "retrain_key",
]


def retrain_key(trigger_id: str) -> str:
    """Hash of one retraining started by the trigger ``trigger_id``."""
    return f"retrain:{trigger_id}"
