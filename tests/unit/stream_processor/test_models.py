from __future__ import annotations

from stream_processor.metrics import StreamMetrics
from stream_processor.models import ModelManager
from tests.unit.stream_processor.fakes import FakeModel
from wearmon.errors import IncompatibleModelError
from wearmon.settings import Settings


def _manager(models: dict[str, object], champion: list[str | None]) -> ModelManager:
    def load(v: str) -> object:
        m = models[v]
        if isinstance(m, Exception):
            raise m
        return m

    return ModelManager(
        Settings(), metrics=StreamMetrics(), loader=load, version_fn=lambda: champion[0]
    )


def test_swap_refuse_and_remember() -> None:
    champion: list[str | None] = [None]
    mgr = _manager(
        {
            "1": FakeModel("1"),
            "2": FakeModel("2", ("a", "b", "c")),
            "3": IncompatibleModelError("input shape (None, 100, 6) does not fit"),
            "4": FakeModel("4", broken=True),
            "5": FakeModel("5", ("a", "a")),
        },
        champion,
    )
    assert mgr.check_once() == "none" and mgr.current is None
    champion[0] = "1"
    assert mgr.check_once() == "swapped" and mgr.version == "1"
    assert mgr.check_once() == "same"
    champion[0] = "2"
    assert mgr.check_once() == "swapped" and mgr.version == "2"
    for bad in ("3", "4", "5"):
        champion[0] = bad
        assert mgr.check_once() == "refused"
        assert mgr.version == "2", "the old model keeps serving"
        assert bad in mgr.refused
        assert mgr.check_once() == "refused"
    assert "100" in mgr.refused["3"]
    assert "probabilities" in mgr.refused["4"]


def test_swap_freezes_long_lived_objects_and_gc_pauses_are_observed() -> None:
    import gc

    gc.unfreeze()
    try:
        metrics = StreamMetrics()
        metrics.watch_gc()
        mgr = ModelManager(
            Settings(), metrics=metrics, loader=lambda v: FakeModel(v), version_fn=lambda: "1"
        )
        assert gc.get_freeze_count() == 0
        assert mgr.check_once() == "swapped"
        assert gc.get_freeze_count() > 0  # the objects alive at the swap are frozen
        gc.collect()
        count = metrics.registry.get_sample_value(
            "wearmon_stream_gc_pause_seconds_count", {"generation": "2"}
        )
        assert count is not None and count >= 1
    finally:
        gc.callbacks[:] = [cb for cb in gc.callbacks if "on_gc" not in repr(cb)]
        gc.unfreeze()
