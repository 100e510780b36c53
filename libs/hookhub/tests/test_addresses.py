"""The order in which a process tries the broker's addresses: its own first, then round-robin."""

from hookhub.addresses import Addresses, redact

NODES = ("amqp://u:p@rabbit-0/", "amqp://u:p@rabbit-1/", "amqp://u:p@rabbit-2/")


def test_the_first_address_is_tried_first_then_the_others_in_order():
    assert Addresses(NODES).in_turn() == NODES


def test_giving_up_on_a_node_tries_the_next_first_and_that_node_last():
    addresses = Addresses(NODES)
    addresses.current = NODES[1]  # connected there

    addresses.move_on()

    assert addresses.in_turn() == (NODES[2], NODES[0], NODES[1])


def test_one_address_is_always_the_one_tried():
    addresses = Addresses(NODES[:1])

    addresses.move_on()

    assert addresses.in_turn() == NODES[:1] and not addresses.several


def test_addresses_are_logged_without_their_password():
    assert redact("amqp://hookhub:s3cret@rabbit-0:5672/hookhub") == (
        "amqp://hookhub:***@rabbit-0:5672/hookhub"
    )
    assert all("p@" not in url for url in Addresses(NODES).redacted())


def test_a_notification_urls_password_is_redacted_and_an_at_sign_in_its_path_left_alone():
    assert redact("https://team:pw@hooks.example/in?to=ops@example.com") == (
        "https://team:***@hooks.example/in?to=ops@example.com"
    )
    assert redact("https://hooks.example/in/ops@example.com") == (
        "https://hooks.example/in/ops@example.com"
    )
