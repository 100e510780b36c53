"""Every consumer in this package, found by its package: a subpackage with a `spec.py` is a
consumer, and its `SPEC` is what the `hookhub.consumers` entry point hands the library.

So adding a consumer here is adding its package; no list names it. Only the spec modules are
imported (they import nothing but the shared library), never a consumer's steps or stores.
"""

import importlib
from pathlib import Path

from hookhub.specs import ConsumerSpec

_HERE = Path(__file__).parent


def _found() -> tuple[ConsumerSpec, ...]:
    return tuple(
        importlib.import_module(f"{__package__}.{package.name}.spec").SPEC
        for package in sorted(_HERE.iterdir())
        if (package / "spec.py").is_file() and (package / "__init__.py").is_file()
    )


SPECS = _found()
