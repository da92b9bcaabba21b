"""The Faust/aiokafka internals the worker relies on (stream_processor/faust_adapter.py) are
still there: an upgrade that breaks one fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

from stream_processor.app import build_app
from stream_processor.faust_adapter import contract_problems
from tests.unit.stream_processor.fakes import FakeManager, FakeModel, FakeProducer, FakeSink
from wearmon.settings import Settings

PACKAGE = Path(__file__).resolve().parents[3] / "stream_processor"


def test_faust_and_aiokafka_still_provide_what_the_adapter_uses() -> None:
    w = build_app(
        Settings(kafka={"bootstrap_servers": "broker:9092"}),
        models=FakeManager(FakeModel()),
        sink=FakeSink(),
        producer=FakeProducer(),
    )
    problems = contract_problems(w.app)
    assert not problems, "Faust/aiokafka changed what the worker relies on:\n" + "\n".join(problems)


def test_no_private_faust_attribute_outside_the_adapter() -> None:
    """Outside faust_adapter.py no module of the worker reads ``x._name`` on anything but
    ``self`` (the private attributes of Faust and aiokafka are the adapter's)."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "faust_adapter.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert not found, found
