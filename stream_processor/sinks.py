"""Redis sinks: prediction keys, idempotent writes, checkpoints and the live-accuracy join.

Key layout (``device`` is the pseudonymous device id; in braces it is a hash tag: every key of
a device is in one slot of a Redis Cluster, and so are the keys tagged ``{stream}``; each
partition's checkpoint has its identity as its tag, a slot of its own):

- ``pred:latest:{device}``  hash, the newest prediction of the device (TTL: history_ttl_s)
- ``pred:hist:{device}``    stream, one entry per window; entry id ``{window_start_ms}-0``;
                            ``XADD ... MAXLEN ~ history_maxlen``; TTL: history_ttl_s
- ``feat:live:{stream}``    stream of per-window features for the drift job
                            (fields device, window_start_ms, model_version, label,
                            confidence, f = JSON list in ``FEATURE_NAMES`` order);
                            ``MAXLEN ~ features_maxlen``; ``feat:names`` holds the names
- ``feat:top:{stream}``     hash: device -> the newest window start in ``feat:live``: a window
                            not newer is not added again (TTL: history_ttl_s)
- ``label:seg:{device}``    sorted set of ground-truth segments (score: end_ms)
- ``acc:live:{device}``     hash ``{version}:total`` / ``{version}:correct`` of the device's
                            scored windows (:func:`accuracy_totals` sums the devices)
- ``acc:scored:{device}``   hash: window start -> 1 (prediction right) or 0 (wrong), each
                            window scored once (TTL: history_ttl_s)
- ``win:raw:{device}``      stream of the raw windows classified (``raw_windows``: all devices,
                            only those with ground truth (``labelled``), or none); entry id
                            ``{window_start_ms}-0``, field ``x`` (wearmon.signals.raw);
                            ``MAXLEN ~ raw_maxlen``; TTL: history_ttl_s
- ``ep:hist:{device}``, ``ep:open:{device}``, ``act:hour:{device}``, ``act:day:{device}``
                            activity episodes and minute totals (stream_processor.episodes)
- ``ckpt:{{app}:{topic}@{topic_id}:{partition}}``  hash: ``__offset__`` plus one state per
                            device in field ``d:{device}`` (its windower, its episode tracker
                            and when it was last seen; a device id can never collide with
                            ``__offset__``); the topic id (Kafka's) tells a recreated topic
                            from the old one. TTL: stream.checkpoint_ttl_s

The predictions of a batch and its checkpoints are written by a Lua script that, for each
prediction, first compares the window start with the id of the newest entry of the device's
history stream: a window that is not newer is a duplicate (a replay after a crash or a
rebalance) and nothing is written. Windows of a device are emitted in increasing start order,
so this makes the writes idempotent by window id. The episodes and minute totals of the
batch's devices follow (absolute values, only going forward), then the windows' features
(idempotent the same way, by ``feat:top``), then the checkpoints: one is written only if all
the predictions, episodes and features it covers were. On a single server that is one call
of the script, atomic. On a Redis Cluster a script may only touch the keys of one slot, so
the batch is one call per device slot (its predictions, scores and episodes; the calls of
a primary in one pipeline), then one call in the ``{stream}`` slot (the features), then one
call per checkpoint slot (a partition's guard and checkpoint), in that order: every
part is idempotent, so a batch that fails between two calls and is written again (the retry,
or the replay from the checkpoint) writes each window once (docs/deploy.md,
"A Redis Cluster").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_processor.episodes import (
    DAY_MS,
    HOUR_MS,
    EpisodeWrite,
    Window,
    daily_key,
    device_key,
    episodes_key,
    hourly_key,
    open_episode_key,
    windows_of_history,
)
from wearmon.schemas import Prediction

log = logging.getLogger(__name__)

#: the hash tag of the live features (one slot of a Redis Cluster)
STREAM_TAG = "{stream}"
FEATURES_KEY = f"feat:live:{STREAM_TAG}"
FEATURE_TOPS_KEY = f"feat:top:{STREAM_TAG}"
FEATURE_NAMES_KEY = "feat:names"
OFFSET_FIELD = "__offset__"
#: first code returned by the batch script when a guard finds an older checkpoint
STALE = -100
#: prefix of the device fields of a checkpoint hash
STATE_PREFIX = "d:"


def latest_key(device: str) -> str:
    return device_key("pred:latest", device)


def history_key(device: str) -> str:
    return device_key("pred:hist", device)


def labels_key(device: str) -> str:
    return device_key("label:seg", device)


def scored_key(device: str) -> str:
    return device_key("acc:scored", device)


def accuracy_key(device: str) -> str:
    return device_key("acc:live", device)


def raw_windows_key(device: str) -> str:
    """Stream of the raw windows the worker classified for a device (entry id
    ``{window_start_ms}-0``, field ``x``: wearmon.signals.raw bytes), read by the retraining
    pool (trainer.pool) together with the device's ground truth."""
    return device_key("win:raw", device)


def checkpoint_key(app_id: str, topic: str, partition: int, topic_id: str | None = None) -> str:
    """The checkpoint hash of a partition, its identity a hash tag of its own (each
    partition's checkpoint in its own slot: on a Redis Cluster they spread over the
    primaries); ``topic_id`` None: the key of checkpoints written before topic ids (read
    once for backward compatibility, never written)."""
    if topic_id is None:
        return f"ckpt:{app_id}:{topic}:{partition}"
    return f"ckpt:{{{app_id}:{topic}@{topic_id}:{partition}}}"


def checkpoint_pattern(app_id: str) -> str:
    """The SCAN pattern of every checkpoint of an app (all topics, all partitions)."""
    return f"ckpt:{{{app_id}:*}}"


def legacy_checkpoint_keys(app_id: str, topic: str, partition: int, topic_id: str) -> list[str]:
    """The keys a partition's checkpoint had in earlier layouts, newest first (read once
    for backward compatibility, never written): every partition in the ``{stream}`` slot,
    then no hash tag, then no topic id."""
    return [
        f"ckpt:{STREAM_TAG}:{app_id}:{topic}@{topic_id}:{partition}",
        f"ckpt:{app_id}:{topic}@{topic_id}:{partition}",
        checkpoint_key(app_id, topic, partition),
    ]


def accuracy_totals(client: Any) -> dict[str, tuple[int, int]]:
    """{version: (correct, total)} of the scored windows of every device (one scan of the
    devices' ``acc:live`` hashes)."""
    keys = list(client.scan_iter(match=accuracy_key("*"), count=1000))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hgetall(k)
    out: dict[str, tuple[int, int]] = {}
    for raw in pipe.execute() if keys else []:
        for k, v in decode_fields(raw).items():
            version, _, kind = k.rpartition(":")
            c, t = out.get(version, (0, 0))
            try:
                n = int(v)
            except ValueError:
                continue
            out[version] = (c + n, t) if kind == "correct" else (c, t + n)
    return out


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
  local ok = 0
  if bestlab == plabel then ok = 1 end
  redis.call('HSET', ksc, tostring(ws), ok)
  redis.call('EXPIRE', ksc, ttl)
  redis.call('HINCRBY', kacc, version .. ':total', 1)
  if ok == 1 then redis.call('HINCRBY', kacc, version .. ':correct', 1) end
  return ok
end
"""

# One call per batch (a single server) or per slot (a Redis Cluster): predictions, the
# live-accuracy join, episodes, features, then the checkpoints, so a checkpoint is written
# only if every prediction it covers was (a script that fails stops there: the checkpoints
# come last; on a cluster the checkpoints' call comes after every device call).
# KEYS: per prediction hist, latest, labels, scored, raw, acc; then per episode device
# ep:hist, ep:open, act:hour, act:day; then, with features, feat:live and feat:top; then per
# checkpoint its hash.
# ARGV: hist_maxlen, ttl_s, feat_maxlen, purity, n_predictions, n_checkpoints,
# raw_mode ('all' | 'labelled' | 'off'), raw_maxlen, n_episode_devices, n_features, then per
# prediction PRED_ARGS values:
# device, window_start, window_end, label, confidence, probs, model_version, processed_ms,
# latency_ms, raw window bytes ('' = none); then per episode
# device: through_ms, n_closed, has_open (0/1), n_hours, n_days, the oldest hour and day
# bucket start kept ('' = neither trim nor TTL refresh of ep:open and act:*: they are sent
# when a new hour starts, and always with a TTL under a day), EPISODE_FIELDS values per
# closed episode and for the open one,
# (bucket start, member) per hour and per day; then per feature row FEATURE_ARGS values:
# device, window_start, model_version, label, confidence, features_json; then
# per checkpoint: offset, ttl_s, n_states, n_retired, n_states field/state pairs, n_retired
# fields to delete.
# The episodes of a device are written only when through_ms (the start of the last window
# the tracker counted) is not behind the one stored in ep:open: a replay rewrites the same
# values, a stale writer (a zombie after a rebalance) writes nothing. Every value is
# absolute (a closed episode is added only when it starts after the newest in ep:hist;
# a bucket's member replaces the bucket's old one), so a replay doubles nothing.
# A feature row is added only when its window starts after the device's newest one
# (feat:top): the features are idempotent by window id like the predictions, in their own
# slot.
# A checkpoint only ever moves forward (a zombie worker that lost its partition cannot
# overwrite a newer one). Returns one code per prediction: -1 duplicate, 1 written,
# 2 written + scored wrong, 3 written + scored correct.
# Guards, checked first: the last G KEYS are checkpoint hashes, ARGV ends with their G
# expected offsets and then G. A hash holding an older offset than expected (Redis came
# back from an older snapshot) makes the script write nothing and return
# {STALE, indices of those guards}.
_WRITE_BATCH = (
    _LUA_SCORE
    + """
local ng = tonumber(ARGV[#ARGV])
local stale = {}
for g = 1, ng do
  local prev = tonumber(ARGV[#ARGV - ng + g - 1])
  local cur = redis.call('HGET', KEYS[#KEYS - ng + g], '__offset__')
  if prev >= 0 and (not cur or tonumber(cur) < prev) then stale[#stale + 1] = g end
end
if #stale > 0 then
  table.insert(stale, 1, -100)
  return stale
end
local names = {'device', 'window_start_ms', 'window_end_ms', 'label', 'confidence', 'probs',
               'model_version', 'processed_ms', 'latency_ms'}
local hmax, ttl, fmax = ARGV[1], ARGV[2], ARGV[3]
local purity = tonumber(ARGV[4])
local n, nc = tonumber(ARGV[5]), tonumber(ARGV[6])
local rawmode, rawmax = ARGV[7], ARGV[8]
local ne, nf = tonumber(ARGV[9]), tonumber(ARGV[10])
local out = {}
for i = 0, n - 1 do
  local kh, kl, kseg, ksc = KEYS[1 + 6 * i], KEYS[2 + 6 * i], KEYS[3 + 6 * i], KEYS[4 + 6 * i]
  local kraw, kacc = KEYS[5 + 6 * i], KEYS[6 + 6 * i]
  local b = 11 + 10 * i
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
    -- the raw window, for retraining on labels (all devices, or those with ground truth)
    if ARGV[b + 9] ~= '' and (rawmode == 'all' or
                              (rawmode == 'labelled' and redis.call('EXISTS', kseg) == 1)) then
      redis.call('XADD', kraw, 'MAXLEN', '~', rawmax, wss .. '-0', 'x', ARGV[b + 9])
      redis.call('EXPIRE', kraw, ttl)
    end
    -- join with ground truth already present
    local ok = score(kseg, ksc, kacc, ws, tonumber(ARGV[b + 2]) - ws, purity, ttl, label,
                     version)
    if ok ~= nil then
      code = 2 + ok
      redis.call('EXPIRE', kacc, ttl)
    end
  end
  out[#out + 1] = code
end
local a = 11 + 10 * n
local epnames = {'start_ms', 'end_ms', 'activity', 'mean_confidence', 'windows'}
local function epfields(q)
  local f = {}
  for j = 1, 5 do
    f[2 * j - 1] = epnames[j]
    f[2 * j] = ARGV[q + j - 1]
  end
  return f
end
local function buckets(key, q, nb, keep)
  for j = 0, nb - 1 do
    local t = ARGV[q + 2 * j]
    redis.call('ZREMRANGEBYSCORE', key, t, t)
    redis.call('ZADD', key, t, ARGV[q + 2 * j + 1])
  end
  if keep ~= '' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. keep)
    redis.call('EXPIRE', key, ttl)
  end
end
for e = 0, ne - 1 do
  local kb = 6 * n + 4 * e
  local keh, keo, khour, kday = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4]
  local through = ARGV[a]
  local ncl, hasopen = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local nh, nd = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local keephour, keepday = ARGV[a + 5], ARGV[a + 6]
  local q = a + 7
  local prev = redis.call('HGET', keo, 'through_ms')
  if not prev or tonumber(prev) <= tonumber(through) then
    if ncl > 0 then
      local top = redis.call('XREVRANGE', keh, '+', '-', 'COUNT', 1)
      local last = -1
      if top[1] then last = tonumber(string.match(top[1][1], '^(%d+)')) end
      for c = 0, ncl - 1 do
        local s0 = ARGV[q + 5 * c]
        if tonumber(s0) > last then
          redis.call('XADD', keh, 'MAXLEN', '~', hmax, s0 .. '-0', unpack(epfields(q + 5 * c)))
          last = tonumber(s0)
        end
      end
      redis.call('EXPIRE', keh, ttl)
    end
    local qo = q + 5 * ncl
    if hasopen == 1 then
      redis.call('HSET', keo, 'through_ms', through, unpack(epfields(qo)))
    else
      redis.call('DEL', keo)
      redis.call('HSET', keo, 'through_ms', through)
    end
    if keephour ~= '' or hasopen == 0 then redis.call('EXPIRE', keo, ttl) end
    local qh = qo + 5 * hasopen
    buckets(khour, qh, nh, keephour)
    buckets(kday, qh + 2 * nh, nd, keepday)
  end
  a = q + 5 * (ncl + hasopen) + 2 * (nh + nd)
end
local kc = 6 * n + 4 * ne
if nf > 0 then
  local kfeat, ktop = KEYS[kc + 1], KEYS[kc + 2]
  kc = kc + 2
  for f = 0, nf - 1 do
    local q = a + 6 * f
    local dev, wss = ARGV[q], ARGV[q + 1]
    local prev = redis.call('HGET', ktop, dev)
    if not prev or tonumber(prev) < tonumber(wss) then
      redis.call('XADD', kfeat, 'MAXLEN', '~', fmax, '*', 'device', dev,
                 'window_start_ms', wss, 'model_version', ARGV[q + 2], 'label', ARGV[q + 3],
                 'confidence', ARGV[q + 4], 'f', ARGV[q + 5])
      redis.call('HSET', ktop, dev, wss)
    end
  end
  redis.call('EXPIRE', kfeat, ttl)
  redis.call('EXPIRE', ktop, ttl)
  a = a + 6 * nf
end
for k = 1, nc do
  local key = KEYS[kc + k]
  local off, cttl = ARGV[a], ARGV[a + 1]
  local ns, nr = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  a = a + 4
  local cur = redis.call('HGET', key, '__offset__')
  if not (cur and tonumber(cur) >= tonumber(off)) then
    redis.call('HSET', key, '__offset__', off)
    local i, last = a, a + 2 * ns - 1
    while i <= last do
      local j = math.min(i + 999, last)
      redis.call('HSET', key, unpack(ARGV, i, j))
      i = j + 1
    end
    local r, rlast = a + 2 * ns, a + 2 * ns + nr - 1
    while r <= rlast do
      local j = math.min(r + 999, rlast)
      redis.call('HDEL', key, unpack(ARGV, r, j))
      r = j + 1
    end
    redis.call('EXPIRE', key, cttl)
  end
  a = a + 2 * ns + nr
end
return out
"""
)
PRED_ARGS = 10
FEATURE_ARGS = 6

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


@dataclass(frozen=True)
class Checkpoint:
    """One partition's snapshot: the last offset it covers and the changed device states."""

    key: str  # checkpoint_key(app, topic, partition, topic_id)
    partition: int
    offset: int
    states: dict[str, bytes]
    #: devices whose state is deleted from the checkpoint (idle past the retention)
    retired: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteOutcome:
    """Per prediction: True if new (written), False if a duplicate; plus newly scored ones."""

    new: list[bool]
    scored: list[tuple[str, bool]]


def prediction_values(p: Prediction) -> list[Any]:
    """The values of the prediction fields (names in ``_WRITE_BATCH``), as stored in
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


#: the fields of an episode in ep:hist and ep:open (names in ``_WRITE_BATCH``)
EPISODE_FIELDS = ("start_ms", "end_ms", "activity", "mean_confidence", "windows")


def episode_values(e: EpisodeWrite, ttl_s: int) -> list[Any]:
    """The ARGV of one device's episodes in ``_WRITE_BATCH``. A bucket that ended more than
    ``ttl_s`` before the newest window counted is trimmed (data time: a replay of an old
    recording keeps its minutes, and the same windows trim the same buckets). The trim and
    the TTL refresh of the open episode and the buckets happen when a new hour starts (HSET
    and ZADD keep a key's TTL; a TTL of a day or more outlasts an hour), or every time with
    a shorter TTL; ep:hist's TTL is refreshed with each episode added."""
    keep = e.through_ms - ttl_s * 1000
    refresh = e.new_hour or ttl_s * 1000 < DAY_MS  # a device silent past the TTL: new hour
    out: list[Any] = [e.through_ms, len(e.closed), int(e.open is not None), len(e.hours)]
    out += [len(e.days), *((keep - HOUR_MS, keep - DAY_MS) if refresh else ("", ""))]
    for ep in [*e.closed, *([e.open] if e.open is not None else [])]:
        f = ep.fields()
        out += [f[k] for k in EPISODE_FIELDS]
    for b in (*e.hours, *e.days):
        out += [b.start_ms, b.member()]
    return out


def decode_fields(raw: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


class RedisSink:
    """Idempotent, atomic writes of predictions and checkpoints (sync redis client)."""

    def __init__(
        self,
        client: Any,
        *,
        history_maxlen: int,
        ttl_s: int,
        features_maxlen: int,
        purity: float = 0.8,
        checkpoint_ttl_s: int = 30 * 24 * 3600,
        raw_windows: str = "labelled",
        raw_maxlen: int = 1800,
    ) -> None:
        if raw_windows not in ("all", "labelled", "off"):
            raise ValueError(f"raw_windows must be all, labelled or off, not {raw_windows!r}")
        self.raw_windows = raw_windows
        self.raw_maxlen = raw_maxlen
        self.client = client
        self.history_maxlen = history_maxlen
        self.ttl_s = ttl_s
        self.features_maxlen = features_maxlen
        self.purity = purity
        self.checkpoint_ttl_s = checkpoint_ttl_s
        import redis

        #: a Redis Cluster client: the batch is written slot by slot (``write``)
        self.cluster = isinstance(client, redis.RedisCluster)
        self._batch = client.register_script(_WRITE_BATCH)
        self._label = client.register_script(_WRITE_LABEL)
        self._names_written = False

    @classmethod
    def from_settings(cls, settings: Any) -> RedisSink:

        s = settings.stream
        client = settings.redis.connect(
            socket_timeout=s.redis_timeout_s, socket_connect_timeout=s.redis_timeout_s
        )
        r = settings.redis
        return cls(
            client,
            history_maxlen=r.history_maxlen,
            ttl_s=r.history_ttl_s,
            features_maxlen=r.features_maxlen,
            purity=settings.signal.label_purity,
            checkpoint_ttl_s=s.checkpoint_ttl_s,
            raw_windows=s.raw_windows,
            raw_maxlen=r.raw_windows_maxlen,
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
        raw: Sequence[bytes] | None = None,
        guards: Sequence[tuple[str, int]] = (),
        episodes: Sequence[EpisodeWrite] = (),
    ) -> WriteOutcome:
        """Write predictions (their features and raw windows), the devices' episodes and
        minute totals, then the checkpoints: one script call on a single server; on a Redis
        Cluster one call per device slot, then one for the features and checkpoints.
        ``raw``: one wearmon.signals.raw value per prediction (kept per ``raw_windows``)."""
        if not predictions and not checkpoints and not episodes:
            return WriteOutcome(new=[], scored=[])
        if features is not None:
            self._ensure_feature_names()
        feats: list[str] = [""] * len(predictions)
        if features is not None and predictions:
            rounded = np.round(np.asarray(features, dtype=np.float64), 6).tolist()
            feats = [json.dumps(r) for r in rounded]
        raws: Sequence[bytes | str] = [""] * len(predictions)
        if raw is not None and self.raw_windows != "off":
            raws = raw
        rows = [
            [p.device, p.window_start_ms, p.model_version, p.label, f"{p.confidence:.6f}", f]
            for p, f in zip(predictions, feats, strict=True)
            if f
        ]
        everything = list(range(len(predictions)))
        if not self.cluster:
            keys, args = self._call(predictions, raws, everything, episodes, rows, checkpoints)
            codes = self._run(keys, args, guards)
        else:
            codes = [0] * len(predictions)
            groups = self._by_slot(predictions, episodes)
            calls = [
                _guarded(*self._call(predictions, raws, idx, eps, [], []), ())
                for idx, eps in groups
            ]
            for (idx, _), out in zip(groups, self._run_by_node(calls), strict=True):
                for i, c in zip(idx, out, strict=True):
                    codes[i] = c
            if rows:
                self._run(*self._call(predictions, raws, [], [], rows, []), ())
            self._write_checkpoints(checkpoints, guards)
        scored = [
            (p.model_version, code == 3)
            for p, code in zip(predictions, codes, strict=True)
            if code >= 2
        ]
        return WriteOutcome(new=[c >= 1 for c in codes], scored=scored)

    def _call(
        self,
        predictions: Sequence[Prediction],
        raws: Sequence[bytes | str],
        idx: Sequence[int],
        episodes: Sequence[EpisodeWrite],
        rows: Sequence[list[Any]],
        checkpoints: Sequence[Checkpoint],
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one call of ``_WRITE_BATCH`` (without the guards): the
        predictions ``idx``, ``episodes``, the feature ``rows``, ``checkpoints``."""
        keys: list[str] = []
        args: list[Any] = [
            self.history_maxlen,
            self.ttl_s,
            self.features_maxlen,
            self.purity,
            len(idx),
            len(checkpoints),
            self.raw_windows,
            self.raw_maxlen,
            len(episodes),
            len(rows),
        ]
        for i in idx:
            p = predictions[i]
            d = p.device
            keys += [
                history_key(d), latest_key(d), labels_key(d), scored_key(d), raw_windows_key(d),
                accuracy_key(d),
            ]  # fmt: skip
            args += prediction_values(p)
            args.append(raws[i])
        for e in episodes:
            d = e.device
            keys += [episodes_key(d), open_episode_key(d), hourly_key(d), daily_key(d)]
            args += episode_values(e, self.ttl_s)
        if rows:
            keys += [FEATURES_KEY, FEATURE_TOPS_KEY]
            for r in rows:
                args += r
        for c in checkpoints:
            keys.append(c.key)
            args += [c.offset, self.checkpoint_ttl_s, len(c.states), len(c.retired)]
            for device, state in c.states.items():
                args += [STATE_PREFIX + device, state]
            args += [STATE_PREFIX + d for d in c.retired]
        return keys, args

    def _run(
        self, keys: list[str], args: list[Any], guards: Sequence[tuple[str, int]]
    ) -> list[int]:
        """One call of the batch script; StaleCheckpoint when a guard finds an older
        checkpoint (nothing of the call was written)."""
        codes = [int(r) for r in self._batch(*_guarded(keys, args, guards))]
        if codes and codes[0] == STALE:
            raise StaleCheckpoint([guards[i - 1][0] for i in codes[1:]])
        return codes

    def _write_checkpoints(
        self, checkpoints: Sequence[Checkpoint], guards: Sequence[tuple[str, int]]
    ) -> None:
        """On a Redis Cluster: the checkpoints and guards of the batch, one call per
        checkpoint slot (a partition's checkpoint and its guard share one), the calls of a
        primary in one pipeline; StaleCheckpoint naming every guard that found an older
        checkpoint (the other partitions' checkpoints are written)."""
        from redis.crc import key_slot

        by_slot: dict[int, tuple[list[Checkpoint], list[tuple[str, int]]]] = {}
        for c in checkpoints:
            by_slot.setdefault(key_slot(c.key.encode()), ([], []))[0].append(c)
        for g in guards:
            by_slot.setdefault(key_slot(g[0].encode()), ([], []))[1].append(g)
        parts = list(by_slot.values())
        calls = [_guarded(*self._call([], [], [], [], [], cps), gs) for cps, gs in parts]
        stale: list[str] = []
        for (_, gs), out in zip(parts, self._run_by_node(calls), strict=True):
            if out and out[0] == STALE:
                stale += [gs[i - 1][0] for i in out[1:]]
        if stale:
            raise StaleCheckpoint(stale)

    def _run_by_node(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[list[int]]:
        """Calls of a batch on a Redis Cluster (KEYS and ARGV, guards appended), each in
        one slot: one pipeline of EVALSHA per primary (one round trip each; redis-py's
        cluster pipeline refuses EVALSHA). A node's pipeline that fails (a slot moved, the
        node lost its scripts or its connection) is written again call by call through the
        cluster client, which follows redirections and loads the script: each call is
        idempotent."""
        import redis

        by_node: dict[str, list[int]] = {}
        nodes: dict[str, Any] = {}
        for j, (keys, _) in enumerate(calls):
            node = self.client.get_node_from_key(keys[0])
            by_node.setdefault(node.name, []).append(j)
            nodes[node.name] = node
        out: list[list[int]] = [[] for _ in calls]
        for name, js in by_node.items():
            conn = nodes[name].redis_connection
            res: list[Any] | None = None
            if conn is not None:
                pipe = conn.pipeline(transaction=False)
                for j in js:
                    keys, args = calls[j]
                    pipe.evalsha(self._batch.sha, len(keys), *keys, *args)
                try:
                    res = pipe.execute()
                except redis.RedisError as exc:
                    log.info("batch pipeline to %s failed (%s); writing call by call", name, exc)
            if res is None:
                res = [self._batch(*calls[j]) for j in js]
            for j, r in zip(js, res, strict=True):
                out[j] = [int(x) for x in r]
        return out

    def _by_slot(
        self, predictions: Sequence[Prediction], episodes: Sequence[EpisodeWrite]
    ) -> list[tuple[list[int], list[EpisodeWrite]]]:
        """The predictions (indices, in order) and episodes of each Redis Cluster slot."""
        from redis.crc import key_slot

        slots: dict[int, tuple[list[int], list[EpisodeWrite]]] = {}
        for i, p in enumerate(predictions):
            slots.setdefault(key_slot(history_key(p.device).encode()), ([], []))[0].append(i)
        for e in episodes:
            slots.setdefault(key_slot(history_key(e.device).encode()), ([], []))[1].append(e)
        return list(slots.values())

    def history_tops(self, devices: Sequence[str]) -> dict[str, int]:
        """The newest window start in each device's history (-1: none)."""
        pipe = self.client.pipeline(transaction=False)
        for d in devices:
            pipe.xrevrange(history_key(d), count=1)
        return {
            d: (int(_s(top[0][0]).split("-")[0]) if top else -1)
            for d, top in zip(devices, pipe.execute(), strict=True)
        }

    def stored_windows(self, ranges: dict[str, tuple[int, int]]) -> dict[str, dict[int, Window]]:
        """The predictions already in each device's history with a window start in
        ``[first, last]``, as episode windows, by start (what a replay must count instead of
        its own predictions of the same windows)."""
        pipe = self.client.pipeline(transaction=False)
        for d, (first, last) in ranges.items():
            pipe.xrange(history_key(d), min=f"{first}-0", max=f"{last}-0")
        return {
            d: {w.start_ms: w for w in windows_of_history(entries)}
            for d, entries in zip(ranges, pipe.execute(), strict=True)
        }

    def write_label(
        self, device: str, start_ms: int, end_ms: int, label: str, window_ms: int
    ) -> list[tuple[str, bool]]:
        """Store a ground-truth segment and score the predictions it completes."""
        out = self._label(
            keys=[
                labels_key(device),
                history_key(device),
                scored_key(device),
                accuracy_key(device),
            ],
            args=[start_ms, end_ms, label, self.ttl_s, self.purity, window_ms],
        )
        pairs = list(out or [])
        return [(_s(pairs[i]), int(pairs[i + 1]) == 1) for i in range(0, len(pairs) - 1, 2)]

    def accuracy(self) -> dict[str, tuple[int, int]]:
        """{version: (correct, total)} over every worker."""
        return accuracy_totals(self.client)

    def load_state(self, key: str, device: str) -> bytes | None:
        """The checkpointed state of one device (an evicted device sending again)."""
        raw = self.client.hget(key, STATE_PREFIX + device)
        return None if raw is None else bytes(raw)

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def load_checkpoint(
        self, app_id: str, topic: str, partition: int, topic_id: str | None = None
    ) -> tuple[int | None, dict[str, bytes], bool]:
        """(offset, {device: state}, legacy) of a partition; offset None when there is none.
        ``legacy``: read from the key of checkpoints written before topic ids (the next
        checkpoint must then hold every device)."""
        raw = self.client.hgetall(checkpoint_key(app_id, topic, partition, topic_id))
        legacy = False
        if not raw and topic_id is not None:
            for old in legacy_checkpoint_keys(app_id, topic, partition, topic_id):
                raw = self.client.hgetall(old)
                if raw:
                    legacy = True
                    break
        offset: int | None = None
        states: dict[str, bytes] = {}
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else str(k)
            if key == OFFSET_FIELD:
                offset = int(v)
            elif key.startswith(STATE_PREFIX):
                states[key[len(STATE_PREFIX) :]] = bytes(v)
            elif legacy:  # written before the prefix
                states[key] = bytes(v)
        return offset, states, legacy


def _guarded(
    keys: list[str], args: list[Any], guards: Sequence[tuple[str, int]]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of a ``_WRITE_BATCH`` call with its guards appended (their keys, their
    expected offsets, their count)."""
    return [*keys, *(k for k, _ in guards)], [*args, *(o for _, o in guards), len(guards)]


class StaleCheckpoint(Exception):
    """Redis holds an older checkpoint than this worker wrote (it restarted from an older
    snapshot): nothing of the batch was written."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__(f"Redis went back in time for {', '.join(keys)}")
        self.keys = list(keys)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
