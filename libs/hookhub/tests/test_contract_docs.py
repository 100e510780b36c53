"""The README states the contracts the code defines; these keep the two from drifting apart."""

from pathlib import Path

from hookhub import specs
from hookhub.providers import PROVIDERS

README = (Path(__file__).parents[3] / "README.md").read_text()


def test_the_readme_names_every_event_type_of_the_catalogue():
    missing = [event_type for event_type in specs.catalogue() if f"`{event_type}`" not in README]
    assert missing == []


def test_the_readme_documents_every_provider():
    missing = [name for name in PROVIDERS if f"| `{name}` |" not in README]
    assert missing == []


def test_the_readme_lists_what_each_consumer_reads():
    for consumer in specs.installed():
        row = next(line for line in README.splitlines() if line.startswith(f"| {consumer.name} |"))
        assert all(f"`{key}`" in row for key in consumer.bindings), (consumer.name, row)
