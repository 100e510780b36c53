"""The shared library goes into every image, so it imports nothing only one service needs:
verifying webhook signatures is hub-api's (`hub_api.signatures`), and so are the libraries the
schemes use."""

import json
import subprocess
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

# import name → distribution name, of the libraries only hub-api's signature schemes use
HUB_API_ONLY = {"stripe": "stripe", "nacl": "pynacl", "standardwebhooks": "standardwebhooks"}
# A fresh interpreter: this one may already hold hub_api (and so every scheme's library).
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import hookhub
for module in pkgutil.walk_packages(hookhub.__path__, "hookhub."):
    importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""


def test_importing_every_library_module_loads_no_signature_library():
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(run.stdout.splitlines()[-1]))

    assert {"hookhub.providers", "hookhub.cli"} <= loaded  # the walk reached the modules
    assert {name.split(".")[0] for name in loaded} & HUB_API_ONLY.keys() == set()


def test_the_library_does_not_depend_on_a_signature_library():
    declared = {Requirement(line).name.lower() for line in requires("hookhub") or ()}

    assert declared & set(HUB_API_ONLY.values()) == set()
