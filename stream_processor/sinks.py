"""Redis sinks: prediction keys, idempotent writes, checkpoints and the live-accuracy join.

Key layout (``device`` is the pseudonymous device id):

- ``pred:latest:{device}``  hash, the newest prediction of the device (TTL: history_ttl_s)
- ``pred:hist:{device}``    stream, one entry per window; entry id ``{window_start_ms}-0``;
                            ``XADD ... MAXLEN ~ history_maxlen``; TTL: history_ttl_s
- ``feat:live``             stream of per-window features for the drift job
                            (fields device, window_start_ms, model_version, label,
                            confidence, f = JSON list in ``FEATURE_NAMES`` order);
                            ``MAXLEN ~ features_maxlen``; ``feat:names`` holds the names
- ``label:seg:{device}``    sorted set of ground-truth segments (score: end_ms)
- ``acc:live``              hash ``{version}:total`` / ``{version}:correct``
- ``acc:scored:{device}``   hash of window starts already scored (so each counts once)
- ``ckpt:{app}:{topic}:{partition}``  hash: ``__offset__`` plus one windower state per device

The predictions of a batch are written by one call of a Lua script that, for each
prediction, first compares the window start with the id of the newest entry of the device's
history stream: a window that is not newer is a duplicate (a replay after a crash or a
rebalance) and nothing is written. Windows of a device are emitted in increasing start order,
so this makes the writes idempotent by window id. The script call and the checkpoints of a
batch go in one pipeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wearmon.schemas import Prediction

log = logging.getLogger(__name__)

FEATURES_KEY = "feat:live"
FEATURE_NAMES_KEY = "feat:names"
ACCURACY_KEY = "acc:live"
OFFSET_FIELD = "__offset__"


def latest_key(device: str) -> str:
    return f"pred:latest:{device}"


def history_key(device: str) -> str:
    return f"pred:hist:{device}"


def labels_key(device: str) -> str:
    return f"label:seg:{device}"


def scored_key(device: str) -> str:
    return f"acc:scored:{device}"


def checkpoint_key(app_id: str, topic: str, partition: int) -> str:
    return f"ckpt:{app_id}:{topic}:{partition}"


# Shared by both scripts below: score one prediction against the stored ground truth.
# The label covering most of [ws, ws + wms) must cover at least purity of it (the rule of
# training windows); each window is scored once (ksc). Returns nil when the window cannot be
# scored (yet), else 1 if the prediction was right, 0 if wrong.
_LUA_SCORE = """
local function score(kseg, ksc, kacc, ws, wms, purity, ttl, plabel, version)
  local we = ws + wms
  local segs = redis.call('ZRANGEBYSCORE', kseg, '(' .. tostring(ws), '+inf')
  local cover = {}
  local best, bestlab = 0, nil
  for _, s in ipairs(segs) do
    local sa, sb, lab = string.match(s, '^(%-?%d+):(%-?%d+):(.*)$')
    sa = tonumber(sa); sb = tonumber(sb)
    if sa < we then
      local c = math.min(sb, we) - math.max(sa, ws)
      if c > 0 then
        cover[lab] = (cover[lab] or 0) + c
        if cover[lab] > best then best = cover[lab]; bestlab = lab end
      end
    end
  end
  if bestlab == nil or best < purity * wms then return nil end
  redis.call('HSET', ksc, tostring(ws), 1)
  redis.call('EXPIRE', ksc, ttl)
  redis.call('HINCRBY', kacc, version .. ':total', 1)
  if bestlab == plabel then
    redis.call('HINCRBY', kacc, version .. ':correct', 1)
    return 1
  end
  return 0
end
"""

# One call per batch. KEYS: feat, acc, then per prediction hist, latest, labels, scored.
# ARGV: hist_maxlen, ttl_s, feat_maxlen, purity, then per prediction PRED_ARGS values:
#       device, window_start, window_end, label, confidence, probs, model_version,
#       processed_ms, latency_ms, features_json ('' = none).
# Returns one code per prediction: -1 duplicate, 1 written, 2 written + scored wrong,
# 3 written + scored correct.
_WRITE_PREDICTIONS = (
    _LUA_SCORE
    + """
local names = {'device', 'window_start_ms', 'window_end_ms', 'label', 'confidence', 'probs',
               'model_version', 'processed_ms', 'latency_ms'}
local hmax, ttl, fmax = ARGV[1], ARGV[2], ARGV[3]
local purity = tonumber(ARGV[4])
local out = {}
local n = (#KEYS - 2) / 4
for i = 0, n - 1 do
  local kh, kl, kseg, ksc = KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i], KEYS[6 + 4 * i]
  local b = 5 + 10 * i
  local wss = ARGV[b + 1]
  local ws = tonumber(wss)
  local code = 1
  local top = redis.call('XREVRANGE', kh, '+', '-', 'COUNT', 1)
  if top[1] and tonumber(string.match(top[1][1], '^(%d+)')) >= ws then
    code = -1
  else
    local fields = {}
    for j = 1, 9 do
      fields[2 * j - 1] = names[j]
      fields[2 * j] = ARGV[b + j - 1]
    end
    local label, version = ARGV[b + 3], ARGV[b + 6]
    redis.call('XADD', kh, 'MAXLEN', '~', hmax, wss .. '-0', unpack(fields))
    redis.call('EXPIRE', kh, ttl)
    redis.call('DEL', kl)
    redis.call('HSET', kl, unpack(fields))
    redis.call('EXPIRE', kl, ttl)
    if ARGV[b + 9] ~= '' then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', fmax, '*', 'device', ARGV[b],
                 'window_start_ms', wss, 'model_version', version, 'label', label,
                 'f', ARGV[b + 9])
    end
    -- join with ground truth already present
    local ok = score(kseg, ksc, KEYS[2], ws, tonumber(ARGV[b + 2]) - ws, purity, ttl, label,
                     version)
    if ok ~= nil then code = 2 + ok end
  end
  out[#out + 1] = code
end
return out
"""
)
PRED_ARGS = 10

# KEYS: labels, hist, scored, acc
# ARGV: start, end, label, ttl_s, purity, window_ms
# Stores the segment, then scores the device's predictions it completes. Returns a flat list
# version, correct(0/1), ... of the newly scored predictions.
_WRITE_LABEL = (
    _LUA_SCORE
    + """
local a = tonumber(ARGV[1])
local b = tonumber(ARGV[2])
local wms = tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], b, ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local out = {}
local entries = redis.call('XRANGE', KEYS[2], tostring(math.max(0, a - wms + 1)), tostring(b))
for _, e in ipairs(entries) do
  local ws = tonumber(string.match(e[1], '^(%d+)'))
  if redis.call('HEXISTS', KEYS[3], tostring(ws)) == 0 then
    local f = e[2]
    local plabel, version = nil, nil
    for i = 1, #f, 2 do
      if f[i] == 'label' then plabel = f[i + 1] end
      if f[i] == 'model_version' then version = f[i + 1] end
    end
    local ok = score(KEYS[1], KEYS[3], KEYS[4], ws, wms, tonumber(ARGV[5]), ARGV[4], plabel,
                     version)
    if ok ~= nil then
      out[#out + 1] = version
      out[#out + 1] = ok
    end
  end
end
return out
"""
)

# KEYS: checkpoint hash; ARGV: offset, then device/state pairs. Only ever moves forward.
_WRITE_CHECKPOINT = """
local cur = redis.call('HGET', KEYS[1], '__offset__')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], '__offset__', ARGV[1])
local n = #ARGV
local i = 2
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
return 1
"""


@dataclass(frozen=True)
class Checkpoint:
    """One partition's snapshot: the last offset it covers and the changed device states."""

    key: str  # checkpoint_key(app, topic, partition)
    partition: int
    offset: int
    states: dict[str, bytes]


@dataclass(frozen=True)
class WriteOutcome:
    """Per prediction: True if new (written), False if a duplicate; plus newly scored ones."""

    new: list[bool]
    scored: list[tuple[str, bool]]


def prediction_values(p: Prediction) -> list[Any]:
    """The values of the prediction fields (names in ``_WRITE_PREDICTIONS``), as stored in
    the latest hash and the history stream."""
    return [
        p.device,
        p.window_start_ms,
        p.window_end_ms,
        p.label,
        f"{p.confidence:.6f}",
        json.dumps([round(float(v), 6) for v in p.probs]),
        p.model_version,
        p.processed_ms,
        "" if p.latency_ms is None else f"{p.latency_ms:.1f}",
    ]


def decode_fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


class RedisSink:
    """Pipelined, idempotent writes of predictions and checkpoints (sync redis client)."""

    def __init__(
        self,
        client: Any,
        *,
        history_maxlen: int,
        ttl_s: int,
        features_maxlen: int,
        purity: float = 0.8,
    ) -> None:
        self.client = client
        self.history_maxlen = history_maxlen
        self.ttl_s = ttl_s
        self.features_maxlen = features_maxlen
        self.purity = purity
        self._preds = client.register_script(_WRITE_PREDICTIONS)
        self._label = client.register_script(_WRITE_LABEL)
        self._ckpt = client.register_script(_WRITE_CHECKPOINT)
        self._names_written = False

    @classmethod
    def from_settings(cls, settings: Any) -> RedisSink:
        import redis

        client = redis.Redis.from_url(settings.redis.url, **settings.redis.client_kwargs())
        r = settings.redis
        return cls(
            client,
            history_maxlen=r.history_maxlen,
            ttl_s=r.history_ttl_s,
            features_maxlen=r.features_maxlen,
            purity=settings.signal.label_purity,
        )

    def _ensure_feature_names(self) -> None:
        if self._names_written:
            return
        from wearmon.signals.features import FEATURE_NAMES

        self.client.set(FEATURE_NAMES_KEY, json.dumps(FEATURE_NAMES))
        self._names_written = True

    def write(
        self,
        predictions: Sequence[Prediction],
        features: np.ndarray | None = None,
        checkpoints: Sequence[Checkpoint] = (),
    ) -> WriteOutcome:
        """Write predictions (and their features), then the checkpoints, in one pipeline."""
        if features is not None:
            self._ensure_feature_names()
        pipe = self.client.pipeline(transaction=False)
        if predictions:
            keys: list[str] = [FEATURES_KEY, ACCURACY_KEY]
            args: list[Any] = [self.history_maxlen, self.ttl_s, self.features_maxlen, self.purity]
            feats: list[str] = [""] * len(predictions)
            if features is not None:
                rounded = np.round(np.asarray(features, dtype=np.float64), 6).tolist()
                feats = [json.dumps(r) for r in rounded]
            for p, f in zip(predictions, feats, strict=True):
                d = p.device
                keys += [history_key(d), latest_key(d), labels_key(d), scored_key(d)]
                args += prediction_values(p)
                args.append(f)
            self._preds(keys=keys, args=args, client=pipe)
        for c in checkpoints:
            cargs: list[Any] = [c.offset]
            for device, state in c.states.items():
                cargs += [device, state]
            self._ckpt(keys=[c.key], args=cargs, client=pipe)
        results = pipe.execute()
        codes = [int(r) for r in results[0]] if predictions else []
        scored = [
            (p.model_version, code == 3)
            for p, code in zip(predictions, codes, strict=True)
            if code >= 2
        ]
        return WriteOutcome(new=[c >= 1 for c in codes], scored=scored)

    def write_label(
        self, device: str, start_ms: int, end_ms: int, label: str, window_ms: int
    ) -> list[tuple[str, bool]]:
        """Store a ground-truth segment and score the predictions it completes."""
        out = self._label(
            keys=[labels_key(device), history_key(device), scored_key(device), ACCURACY_KEY],
            args=[start_ms, end_ms, label, self.ttl_s, self.purity, window_ms],
        )
        pairs = list(out or [])
        return [(_s(pairs[i]), int(pairs[i + 1]) == 1) for i in range(0, len(pairs) - 1, 2)]

    def accuracy(self) -> dict[str, tuple[int, int]]:
        """{version: (correct, total)} over every worker."""
        raw = decode_fields(self.client.hgetall(ACCURACY_KEY))
        out: dict[str, tuple[int, int]] = {}
        for k, v in raw.items():
            version, _, kind = k.rpartition(":")
            c, t = out.get(version, (0, 0))
            out[version] = (int(v), t) if kind == "correct" else (c, int(v))
        return out

    def load_checkpoint(
        self, app_id: str, topic: str, partition: int
    ) -> tuple[int | None, dict[str, bytes]]:
        """(offset, {device: state}) of a partition; offset None when there is none."""
        raw = self.client.hgetall(checkpoint_key(app_id, topic, partition))
        offset: int | None = None
        states: dict[str, bytes] = {}
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else str(k)
            if key == OFFSET_FIELD:
                offset = int(v)
            else:
                states[key] = bytes(v)
        return offset, states


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
