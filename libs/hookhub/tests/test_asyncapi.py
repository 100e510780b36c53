"""The generated AsyncAPI document is valid against the official AsyncAPI 3.0 schema and says
what the specs say."""

import json
from pathlib import Path

import jsonschema
from hookhub import asyncapi, specs, topology
from hookhub.specs import ConsumerSpec

SCHEMA = json.loads(
    (Path(__file__).parents[3] / "tests/support/asyncapi/asyncapi-3.0.0.schema.json").read_text()
)


def _errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_the_document_is_valid_asyncapi_3():
    assert _errors(asyncapi.document()) == []


def test_a_broken_document_is_caught_by_the_schema():
    broken = asyncapi.document()
    broken["channels"]["events"]["address"] = 42
    assert _errors(broken) != []


def test_each_consumer_has_its_queue_and_receives_what_it_binds():
    document = asyncapi.document()
    for spec in specs.installed():
        channel = document["channels"][spec.name]
        assert channel["address"] == topology.work_queue(spec.name)
        received = {
            m["$ref"].rsplit("/", 1)[1]
            for m in document["operations"][f"{spec.name}Receives"]["messages"]
        }
        assert received == set(channel["messages"])
    assert "payment.approved" in document["channels"]["production"]["messages"]
    assert "order.created" in document["channels"]["payments"]["messages"]
    assert "stripe.all" in document["channels"]["payments"]["messages"]


def test_a_contract_is_the_payload_of_its_type():
    message = asyncapi.document()["components"]["messages"]["order.created"]
    assert message["payload"]["properties"]["amount"]["type"] == "integer"
    assert message["x-emitted-by"] == "internal"


def test_a_new_consumer_appears_with_its_queue_and_what_it_emits():
    loyalty = ConsumerSpec(
        "loyalty",
        ("payment.approved",),
        "example:STEPS",
        emits={"loyalty.points_granted": "points for a paid order"},
        owns=("loyalty",),
    )
    document = asyncapi.document((*specs.installed(), loyalty))
    assert document["channels"]["loyalty"]["address"] == "hookhub.loyalty"
    assert "loyalty.points_granted" in document["components"]["messages"]
    assert _errors(document) == []
