"""The docs state the contracts the code defines; these keep the two from drifting apart."""

from pathlib import Path

from hookhub import specs
from hookhub.providers import PROVIDERS

DOCS = Path(__file__).parents[3] / "docs"
SENDING_EVENTS = (DOCS / "sending-events.md").read_text()
SAGA = (DOCS / "saga.md").read_text()


def test_the_docs_name_every_event_type_of_the_catalogue():
    # What callers send is documented for them; what the consumers emit, with the saga.
    missing = [
        event_type
        for event_type, (emitter, _) in specs.catalogue().items()
        if f"`{event_type}`" not in (SENDING_EVENTS if emitter == "internal" else SAGA)
    ]
    assert missing == []


def test_sending_events_documents_every_provider():
    missing = [name for name in PROVIDERS if f"| `{name}` |" not in SENDING_EVENTS]
    assert missing == []


def test_the_saga_doc_lists_what_each_consumer_reads():
    for consumer in specs.installed():
        row = next(line for line in SAGA.splitlines() if line.startswith(f"| {consumer.name} |"))
        assert all(f"`{key}`" in row for key in consumer.bindings), (consumer.name, row)
