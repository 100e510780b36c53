"""HOOKHUB_AMQP_URL takes one broker URL or several, and never shows a password when one is bad."""

import pytest
from hookhub import publish_policy
from hookhub.settings import Settings
from pydantic import ValidationError

NODE_1 = "amqp://hookhub:s3cret@rabbit-1:5672/hookhub"
NODE_2 = "amqp://hookhub:s3cret@rabbit-2:5672/hookhub"


def test_one_url_is_the_only_address(monkeypatch):
    monkeypatch.setenv("HOOKHUB_AMQP_URL", NODE_1)

    settings = Settings()

    assert settings.amqp_urls == (NODE_1,)
    assert settings.amqp_url == NODE_1


def test_a_comma_separated_list_gives_every_address_in_order_and_the_first_as_amqp_url(
    monkeypatch,
):
    monkeypatch.setenv("HOOKHUB_AMQP_URL", f"{NODE_1}, {NODE_2}")

    settings = Settings()

    assert settings.amqp_urls == (NODE_1, NODE_2)
    assert settings.amqp_url == NODE_1


def test_amqp_url_given_in_code_means_what_the_variable_means(monkeypatch):
    monkeypatch.setenv("HOOKHUB_AMQP_URL", "amqp://elsewhere/")

    assert Settings(amqp_url=f"{NODE_1},{NODE_2}").amqp_urls == (NODE_1, NODE_2)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{NODE_1},http://hookhub:s3cret@rabbit-2/", "URL 2 of 2 must look like amqp://"),
        ("amqp://hookhub:s3c,ret@rabbit-1/", "a comma inside a password is written %2C"),
        ("hookhub:s3cret@rabbit-1:5672/", "must look like amqp://"),
        (" , ", "needs a URL"),
    ],
)
def test_a_bad_address_is_named_by_position_and_its_password_never_shown(
    monkeypatch, value, problem
):
    monkeypatch.setenv("HOOKHUB_AMQP_URL", value)

    with pytest.raises(ValidationError) as raised:
        Settings()

    [error] = raised.value.errors()
    assert error["loc"] == ("HOOKHUB_AMQP_URL",)
    assert problem in error["msg"]
    assert "s3cret" not in str(raised.value) and "s3c" not in error["msg"]


def test_the_deadlines_default_to_a_day_an_hour_and_three_days():
    settings = Settings()

    assert settings.order_payment_timeout_s == 86400
    assert settings.payment_order_timeout_s == 3600
    assert settings.production_timeout_s == 3 * 86400


def test_a_deadline_longer_than_a_message_ttl_can_be_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("HOOKHUB_ORDER_PAYMENT_TIMEOUT_S", str(60 * 86400))

    with pytest.raises(ValidationError, match="order_payment_timeout_s"):
        Settings()


@pytest.mark.parametrize("value", ["-1", "101", "soon"])
def test_a_commit_linger_outside_0_to_100_ms_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("HOOKHUB_COMMIT_LINGER_MS", value)

    with pytest.raises(ValidationError, match="commit_linger_ms"):
        Settings()


def test_the_commit_linger_defaults_to_10_ms_and_0_turns_it_off(monkeypatch):
    assert Settings().commit_linger_ms == 10
    monkeypatch.setenv("HOOKHUB_COMMIT_LINGER_MS", "0")
    assert Settings().commit_linger_ms == 0


def test_a_follow_up_key_too_short_to_be_a_secret_is_refused_naming_it_never_showing_it(
    monkeypatch,
):
    monkeypatch.setenv("HOOKHUB_FOLLOW_UP_KEY", "hunter2")

    with pytest.raises(ValidationError) as raised:
        Settings()

    [error] = raised.value.errors()
    assert error["loc"] == ("follow_up_key",)
    assert "at least 32 characters" in error["msg"]
    assert "hunter2" not in str(raised.value)


def test_an_empty_follow_up_key_is_unset(monkeypatch):
    monkeypatch.setenv("HOOKHUB_FOLLOW_UP_KEY", "")

    assert Settings().follow_up_key is None


def test_the_publish_policy_defaults_to_the_table_in_code(monkeypatch):
    monkeypatch.delenv("HOOKHUB_PUBLISH_POLICY", raising=False)

    assert Settings().publish_policy == dict(publish_policy.DEFAULT)


def test_a_publish_policy_is_read_as_json(monkeypatch):
    monkeypatch.setenv("HOOKHUB_PUBLISH_POLICY", '{"jenkins": ["ci.#"], "shop": ["order.*"]}')

    assert Settings().publish_policy == {"jenkins": ("ci.#",), "shop": ("order.*",)}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{", "is not JSON"),
        ('["ci.#"]', "must be a JSON object from caller to a list of type patterns"),
        ('{"jenkins": "ci.#"}', "caller 'jenkins': give a list of type patterns"),
        ('{"jenkins": ["ci..x"]}', "'ci..x' is not a type pattern"),
        ('{"jenkins": ["ci.#x"]}', "'ci.#x' is not a type pattern"),
        ('{"a/b": ["#"]}', "caller 'a/b' is not a Kong consumer name"),
    ],
)
def test_a_bad_publish_policy_is_refused_saying_what_is_wrong(monkeypatch, value, problem):
    monkeypatch.setenv("HOOKHUB_PUBLISH_POLICY", value)

    with pytest.raises(ValidationError) as raised:
        Settings()

    [error] = raised.value.errors()
    assert error["loc"] == ("publish_policy",)
    assert problem in error["msg"]
