"""docs/consumers.md walks through the toy loyalty consumer file by file: each file it shows is
the package the tests run (`tests/support/loyalty`), word for word."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
SHOWN = re.compile(r"(?ms)^```python\n# (tests/support/loyalty/\S+\.py)\n(.*?)^```$")


def test_each_file_of_the_worked_example_is_shown_as_it_is():
    shown = dict(SHOWN.findall((ROOT / "docs" / "consumers.md").read_text()))

    assert set(shown) == {
        f"tests/support/loyalty/{name}.py"
        for name in ("spec", "records", "store_sqlite", "store_mongo", "steps")
    }
    for path, text in shown.items():
        assert text == (ROOT / path).read_text(), f"docs/consumers.md shows {path} otherwise"
