"""Topology migrations against the real broker: an older Hookhub's topology, with messages in it,
brought to this version's by `plan` and `apply`, every message still there afterwards."""

import asyncio
import base64
import http.server
import json
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from hookhub import migrations, specs, topology
from hookhub.failures import ROUTING_KEY_HEADER, original_routing_key
from hookhub.settings import Settings
from pydantic import SecretStr

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.settings import hub_env

N = 40
OLD_DELAY_S = 7.0  # configured by the old version, not by this one
NEW_DELAYS_S = (5.0,)
OLD_UNROUTED = {"x-queue-type": "quorum", "x-max-length": 200_000, "x-overflow": "drop-head"}
PAYMENTS = topology.work_queue("payments")


def settings_for(amqp_url: str) -> Settings:
    return Settings(amqp_url=amqp_url, retry_delays_s=NEW_DELAYS_S, archive_enabled=False)


@pytest.fixture
async def old_hub() -> AsyncIterator[tuple[str, AbstractConnection]]:
    """A vhost with the topology an older Hookhub declared: hookhub.unrouted with another
    x-max-length, and a retry queue per consumer for a delay this version does not configure."""
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            async with connection.channel() as channel:
                await channel.declare_queue(
                    topology.UNROUTED_QUEUE, durable=True, arguments=OLD_UNROUTED
                )
            async with connection.channel() as channel:
                with pytest.raises(topology.TopologyConflict):
                    await topology.declare(
                        channel,
                        (*NEW_DELAYS_S, OLD_DELAY_S),
                        20,
                        deadlines_s=topology.deadline_durations(settings_for(amqp_url)),
                    )
            yield amqp_url, connection


async def publish(
    connection: AbstractConnection, exchange: str, routing_key: str, n: int, **headers: str
) -> set[str]:
    """n confirmed persistent messages; their ids."""
    ids = set()
    async with connection.channel(publisher_confirms=True) as channel:
        target = await channel.get_exchange(exchange) if exchange else channel.default_exchange
        for _ in range(n):
            message_id = uuid.uuid4().hex
            await target.publish(
                aio_pika.Message(
                    b"{}",
                    message_id=message_id,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key,
            )
            ids.add(message_id)
    return ids


async def take_all(connection: AbstractConnection, queue: str) -> list[aio_pika.IncomingMessage]:
    taken = []
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
    return taken


async def ready(connection: AbstractConnection, queue: str) -> int:
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count


async def exists(connection: AbstractConnection, queue: str) -> bool:
    async with connection.channel() as channel:
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
    return True


def queue_names(amqp_url: str) -> set[str]:
    return set(migrations._with_rabbitmqctl(migrations.vhost_of(amqp_url)).queues)


async def test_plan_names_the_changed_arguments_old_to_new_and_where_retired_messages_go(old_hub):
    amqp_url, connection = old_hub
    await publish(connection, topology.UNROUTED_EXCHANGE, "", N)
    old_retry = topology.retry_queue("payments", OLD_DELAY_S)
    await publish(connection, "", old_retry, N, **{ROUTING_KEY_HEADER: "order.created"})

    plan = await migrations.plan_for(connection, settings_for(amqp_url))

    assert plan.source == "rabbitmqctl" and plan.complete
    assert plan.create == ()
    [change] = plan.change
    assert change.queue == topology.UNROUTED_QUEUE
    assert (change.old["x-max-length"], change.new["x-max-length"]) == (200_000, 100_000)
    assert change.messages == N
    retired = {r.queue: r for r in plan.retire}
    assert set(retired) == {topology.retry_queue(name, OLD_DELAY_S) for name in specs.names()}
    assert (retired[old_retry].messages, retired[old_retry].destination) == (N, PAYMENTS)
    assert plan.refusals == []
    assert "x-max-length: 200000 → 100000" in "\n".join(plan.lines())


async def test_apply_moves_every_message_where_it_belongs_and_leaves_no_temporary_queue(old_hub):
    amqp_url, connection = old_hub
    unrouted_ids = await publish(connection, topology.UNROUTED_EXCHANGE, "", N)
    old_retry = topology.retry_queue("payments", OLD_DELAY_S)
    retry_ids = await publish(connection, "", old_retry, N, **{ROUTING_KEY_HEADER: "order.created"})
    settings = settings_for(amqp_url)
    said: list[str] = []

    plan = await migrations.plan_for(connection, settings)
    refused = await migrations.apply(connection, settings, plan, said.append)

    assert refused == []
    unrouted = await take_all(connection, topology.UNROUTED_QUEUE)
    work = await take_all(connection, PAYMENTS)
    assert {m.message_id for m in unrouted} == unrouted_ids and len(unrouted) == N
    assert {m.message_id for m in work} == retry_ids and len(work) == N
    assert all(m.headers[ROUTING_KEY_HEADER] == "order.created" for m in work)
    names = queue_names(amqp_url)
    assert not [name for name in names if name.endswith(topology.MIGRATING_SUFFIX)]
    assert old_retry not in names
    temporary = topology.migrating_queue(topology.UNROUTED_QUEUE)
    counts = f"{N} moved out to {temporary}, 0 routed there meanwhile, {N} moved back in, 0 left"
    assert counts in said[0]
    assert f"{old_retry}: {N} moved to {PAYMENTS}; removed" in said
    assert (await migrations.plan_for(connection, settings)).empty


async def declare_old(connection: AbstractConnection, queue: str) -> None:
    """`queue` as an older version declared it: payments' work queue with another delivery
    limit, the unrouted queue with another bound; bound as it was."""
    async with connection.channel() as channel:
        await channel.queue_delete(queue, if_unused=False, if_empty=False)
        if queue == topology.UNROUTED_QUEUE:
            old = await channel.declare_queue(queue, durable=True, arguments=OLD_UNROUTED)
            await old.bind(topology.UNROUTED_EXCHANGE, "")
            return
        payments = specs.by_name("payments")
        arguments = topology.consumer_queues(payments, NEW_DELAYS_S, 5)[0].arguments
        old = await channel.declare_queue(queue, durable=True, arguments=arguments)
        for key in payments.bindings:
            await old.bind(topology.EXCHANGE, key)


# An event type payments' work queue binds, and one no queue binds (the unrouted queue's).
@pytest.mark.parametrize(
    ("queue", "event_type"),
    [(PAYMENTS, "order.created"), (topology.UNROUTED_QUEUE, "nobody.binds")],
)
async def test_events_published_while_their_queue_is_recreated_are_all_in_it(
    old_hub, queue, event_type
):
    amqp_url, connection = old_hub
    settings = settings_for(amqp_url)
    await migrations.apply(
        connection, settings, await migrations.plan_for(connection, settings), lambda _: None
    )
    await declare_old(connection, queue)
    before = await publish(connection, topology.EXCHANGE, event_type, 500)
    confirmed: set[str] = set()
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        # on_return_raises: an event no queue took must not count as confirmed
        async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
            exchange = await channel.get_exchange(topology.EXCHANGE)
            while not stop.is_set():
                message_id = uuid.uuid4().hex
                await exchange.publish(
                    aio_pika.Message(b"{}", message_id=message_id), event_type, mandatory=True
                )
                confirmed.add(message_id)

    publishing = asyncio.create_task(keep_publishing())
    await asyncio.sleep(0.3)
    plan = await migrations.plan_for(connection, settings)
    at_start = len(confirmed)
    await migrations.apply(connection, settings, plan, lambda _: None)
    at_end = len(confirmed)
    await asyncio.sleep(0.3)
    stop.set()
    await publishing

    assert [c.queue for c in plan.change] == [queue]
    assert at_end > at_start  # publishing went on through the migration
    messages = await take_all(connection, queue)
    assert before | confirmed <= {m.message_id for m in messages}
    assert {original_routing_key(m) for m in messages} == {event_type}
    assert not await exists(connection, topology.migrating_queue(queue))


async def test_a_migration_left_half_done_is_finished_by_running_apply_again(old_hub):
    amqp_url, connection = old_hub
    settings = settings_for(amqp_url)
    await migrations.apply(
        connection, settings, await migrations.plan_for(connection, settings), lambda _: None
    )
    temporary = topology.migrating_queue(topology.UNROUTED_QUEUE)
    async with connection.channel() as channel:
        await channel.declare_queue(temporary, durable=True, arguments={"x-queue-type": "quorum"})
    ids = await publish(connection, "", temporary, N)

    plan = await migrations.plan_for(connection, settings)
    await migrations.apply(connection, settings, plan, lambda _: None)

    assert [(x.temporary, x.messages) for x in plan.resume] == [(temporary, N)]
    assert {m.message_id for m in await take_all(connection, topology.UNROUTED_QUEUE)} == ids
    assert not await exists(connection, temporary)


async def test_a_retired_queue_no_installed_consumer_takes_is_refused_named_and_kept(old_hub):
    amqp_url, connection = old_hub
    gone = topology.work_queue("gone")
    async with connection.channel() as channel:
        await channel.declare_queue(gone, durable=True, arguments={"x-queue-type": "quorum"})
    ids = await publish(connection, "", gone, 3)
    settings = settings_for(amqp_url)

    plan = await migrations.plan_for(connection, settings)
    refused = await migrations.apply(connection, settings, plan, lambda _: None)

    assert len(refused) == 1 and gone in refused[0] and "3 message(s)" in refused[0]
    assert {m.message_id for m in await take_all(connection, gone)} == ids


async def test_a_deadline_keeps_its_ttl_through_a_temporary_queue(old_hub):
    amqp_url, connection = old_hub
    settings = settings_for(amqp_url)
    await migrations.apply(
        connection, settings, await migrations.plan_for(connection, settings), lambda _: None
    )
    source, temporary = "hookhub.test-source", "hookhub.test-holding"
    async with connection.channel(publisher_confirms=True) as channel:
        for name in (source, temporary):
            await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}", message_id="d1", expiration=3600), source
        )
    await migrations.move(connection, source, temporary, 5, migrations.to_holding)
    await migrations.move(connection, temporary, source, 5, migrations.from_holding)

    [back] = await take_all(connection, source)
    assert back.expiration == 3600
    assert migrations.EXPIRATION_HEADER not in back.headers


async def test_hookhub_topology_plan_then_apply_yes_migrate_and_name_what_is_kept(old_hub):
    amqp_url, connection = old_hub
    gone = topology.work_queue("gone")  # a consumer this version does not install
    async with connection.channel() as channel:
        await channel.declare_queue(gone, durable=True, arguments={"x-queue-type": "quorum"})
    await publish(connection, "", gone, 2)
    env = hub_env(amqp_url, HOOKHUB_RETRY_DELAYS="5", HOOKHUB_ARCHIVE_ENABLED="false")

    def hookhub(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hookhub.cli", "topology", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    planned = await asyncio.to_thread(hookhub, "plan", "--json")
    applied = await asyncio.to_thread(hookhub, "apply", "--yes")
    again = await asyncio.to_thread(hookhub, "plan")

    assert planned.returncode == 0, planned.stderr
    assert '"queue": "hookhub.unrouted"' in planned.stdout
    assert '"settled": false' in planned.stdout
    assert applied.returncode == 0, applied.stderr
    assert "done: the broker has this version's topology" in applied.stdout
    assert "kept: hookhub.gone holds 2 message(s)" in applied.stderr
    assert again.stdout.splitlines()[1].startswith("keep    hookhub.gone: ")
    assert len(again.stdout.splitlines()) == 2


async def test_a_conflict_names_plan_and_apply_and_never_says_delete():
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(
                topology.UNROUTED_QUEUE, durable=True, arguments=OLD_UNROUTED
            )
            with pytest.raises(topology.TopologyConflict) as conflict:
                await topology.declare(channel, NEW_DELAYS_S, 20)
    assert "`hookhub topology apply`" in str(conflict.value)
    assert "delete" not in str(conflict.value).lower()


async def test_over_amqp_alone_a_changed_queue_is_seen_and_migrated_without_its_old_arguments(
    old_hub,
):
    amqp_url, connection = old_hub
    ids = await publish(connection, topology.UNROUTED_EXCHANGE, "", N)
    settings = settings_for(amqp_url)
    wanted = migrations.wanted_queues(settings, None)

    observed = await migrations._with_amqp(connection, wanted)
    plan = migrations.plan(wanted, observed, specs.names())
    refused = await migrations.apply(connection, settings, plan, lambda _: None)

    assert (plan.source, plan.complete) == ("AMQP alone", False)
    assert [(c.queue, c.old, c.messages) for c in plan.change] == [
        (topology.UNROUTED_QUEUE, None, N)
    ]
    assert plan.retire == ()  # not seen: the old retry queues stay, and still expire into work
    assert refused == []
    assert {m.message_id for m in await take_all(connection, topology.UNROUTED_QUEUE)} == ids


async def test_a_work_queue_still_consumed_is_not_deleted_and_apply_again_finishes(
    old_hub, monkeypatch
):
    amqp_url, connection = old_hub
    settings = settings_for(amqp_url)
    await migrations.apply(
        connection, settings, await migrations.plan_for(connection, settings), lambda _: None
    )
    async with connection.channel() as channel:
        await channel.queue_delete(PAYMENTS, if_unused=False, if_empty=False)
        old = topology.consumer_queues(specs.by_name("payments"), NEW_DELAYS_S, 5)[0].arguments
        await channel.declare_queue(PAYMENTS, durable=True, arguments=old)
    ids = await publish(connection, "", PAYMENTS, N)
    monkeypatch.setattr(migrations, "HELD_TIMEOUT_S", 1.0)
    consuming = await connection.channel()
    await consuming.set_qos(prefetch_count=1)

    async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        pass  # never acked: in the consumer's hands until its channel closes

    await (await consuming.declare_queue(PAYMENTS, passive=True)).consume(hold)

    plan = await migrations.plan_for(connection, settings)
    with pytest.raises(migrations.MigrationStopped, match="still has 1 consumer"):
        await migrations.apply(connection, settings, plan, lambda _: None)
    assert await exists(connection, PAYMENTS)
    assert await ready(connection, topology.migrating_queue(PAYMENTS)) == N - 1
    await consuming.close()  # what it held goes back to the queue
    rerun = await migrations.plan_for(connection, settings)
    await migrations.apply(connection, settings, rerun, lambda _: None)

    assert {m.message_id for m in await take_all(connection, PAYMENTS)} == ids
    assert not await exists(connection, topology.migrating_queue(PAYMENTS))


async def test_read_through_the_management_api_the_plan_is_the_same_as_through_rabbitmqctl(
    old_hub,
):
    amqp_url, connection = old_hub
    vhost = migrations.vhost_of(amqp_url)
    queues = migrations._rabbitmqctl("list_queues", "-p", vhost, "name", "arguments", "durable")
    bindings = migrations._rabbitmqctl(
        "list_bindings",
        "-p",
        vhost,
        "source_name",
        "destination_name",
        "destination_kind",
        "routing_key",
    )
    answers = {
        f"/api/queues/{vhost}": [
            {**q, "arguments": migrations._arguments(q["arguments"]), "messages": 0} for q in queues
        ],
        f"/api/bindings/{vhost}": [
            {
                "source": b["source_name"],
                "destination": b["destination_name"],
                "destination_type": b["destination_kind"],
                "routing_key": b["routing_key"],
            }
            for b in bindings
        ],
    }
    asked: list[tuple[str, str]] = []

    class ManagementApi(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.unquote(self.path.split("?")[0])
            asked.append((path, self.headers["Authorization"]))
            body = json.dumps(answers[path]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ManagementApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://monitor:s3cret@127.0.0.1:{server.server_address[1]}/"
        settings = settings_for(amqp_url).model_copy(
            update={"rabbitmq_management_url": SecretStr(url)}
        )
        through_api = await migrations.plan_for(connection, settings)
    finally:
        server.shutdown()
    through_rabbitmqctl = await migrations.plan_for(connection, settings_for(amqp_url))

    assert through_api.source == "the management API"
    assert replace(through_api, source="rabbitmqctl") == through_rabbitmqctl
    token = base64.b64encode(b"monitor:s3cret").decode()
    assert {auth for _, auth in asked} == {f"Basic {token}"}


async def test_a_temporary_queue_is_not_emptied_into_a_bound_that_would_drop_its_oldest(
    old_hub, monkeypatch
):
    amqp_url, connection = old_hub
    settings = settings_for(amqp_url)
    monkeypatch.setattr(topology, "UNROUTED_MAX_MESSAGES", N - 5)
    temporary = topology.migrating_queue(topology.UNROUTED_QUEUE)
    async with connection.channel() as channel:
        await channel.declare_queue(temporary, durable=True, arguments={"x-queue-type": "quorum"})
    ids = await publish(connection, "", temporary, N)
    plan = await migrations.plan_for(connection, settings)

    with pytest.raises(migrations.MigrationStopped, match="5 more than hookhub.unrouted keeps"):
        await migrations.apply(connection, settings, plan, lambda _: None)

    assert {m.message_id for m in await take_all(connection, temporary)} == ids


async def test_a_management_api_out_of_reach_leaves_amqp_alone_and_the_plan_says_why(old_hub):
    amqp_url, connection = old_hub
    closed = f"http://guest:guest@127.0.0.1:{free_port()}"
    settings = settings_for(amqp_url).model_copy(
        update={"rabbitmq_management_url": SecretStr(closed)}
    )

    plan = await migrations.plan_for(connection, settings)

    assert plan.source.startswith("AMQP alone (the RabbitMQ management API at http://127.0.0.1:")
    assert "guest:guest" not in plan.source
    assert [c.queue for c in plan.change] == [topology.UNROUTED_QUEUE]
