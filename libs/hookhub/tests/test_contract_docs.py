"""The README states the contracts the code defines; these keep the two from drifting apart."""

from pathlib import Path

from hookhub.events import CATALOGUE
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
