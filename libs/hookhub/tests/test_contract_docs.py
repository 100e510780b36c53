"""The README states the contracts the code defines; these keep the two from drifting apart."""

from pathlib import Path

from hookhub.events import CATALOGUE, is_reserved
from hookhub.providers import PROVIDERS
from hookhub.topology import CONSUMER_BINDINGS

README = (Path(__file__).parents[3] / "README.md").read_text()


def test_the_readme_names_every_event_type_of_the_catalogue():
    missing = [event_type for event_type in CATALOGUE if f"`{event_type}`" not in README]
    assert missing == []


def test_the_readme_documents_every_provider():
    missing = [name for name in PROVIDERS if f"| `{name}` |" not in README]
    assert missing == []


def test_the_readme_lists_what_each_consumer_reads():
    for consumer, keys in CONSUMER_BINDINGS.items():
        row = next(line for line in README.splitlines() if line.startswith(f"| {consumer} |"))
        assert all(f"`{key}`" in row for key in keys), (consumer, row)


def test_every_type_a_consumer_emits_is_reserved_and_internal_ones_are_not():
    for event_type, (emitter, _) in CATALOGUE.items():
        assert is_reserved(event_type) == (emitter != "internal"), event_type
    assert is_reserved("payment.captured")  # the namespace, not just the listed types
    assert not is_reserved("ci.pipeline.finished")
