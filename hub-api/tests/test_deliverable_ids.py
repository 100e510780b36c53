"""An id hub-api accepts can always be sent on as an HTTP header value (a notification's
`webhook-id`): checked against h11, which httpx writes headers with."""

import h11
from hub_api.rejections import deliverable_id
from hypothesis import given, settings
from hypothesis import strategies as st


def h11_takes_as_header(value: str) -> bool:
    try:
        data = value.encode("ascii")
        request = h11.Request(
            method="POST", target="/", headers=[("host", "x"), ("webhook-id", data)]
        )
        h11.Connection(h11.CLIENT).send(request)
    except (UnicodeEncodeError, h11.LocalProtocolError):
        return False
    return dict(request.headers)[b"webhook-id"] == data  # sent as given, nothing stripped


@settings(max_examples=2000)
@given(st.text(max_size=40))
def test_every_id_accepted_is_one_h11_sends_unchanged(event_id):
    if deliverable_id(event_id):
        assert h11_takes_as_header(event_id)


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1))
def test_every_visible_ascii_id_is_accepted(event_id):
    assert deliverable_id(event_id)


def test_uuids_and_provider_ids_are_deliverable():
    for event_id in ("evt_1NG8Du2eZvKYlo2C", "6f1c7f8e-3f0a-4a57-9a43-4b8d3b1f2c10", "a b:c/d"):
        assert deliverable_id(event_id)
