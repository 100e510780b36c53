"""A publish in flight when its connection is torn (a partition healing, a failover) is not
confirmed: the sender gets a 503 to retry, never a 500."""

import asyncio
import json

from api_processes import running_api

from tests.support.broker import fresh_vhost
from tests.support.tcp_proxy import TcpProxy


async def test_a_publish_whose_connection_is_torn_in_flight_is_a_503(tmp_path):
    with fresh_vhost() as amqp_url, TcpProxy.to_url(amqp_url) as proxy:
        env = {
            "HOOKHUB_AMQP_URL": proxy.url_through(amqp_url, reconnect_interval="0.5"),
            "HOOKHUB_PUBLISH_TIMEOUT_S": "20",  # far longer than the outage: no timeout here
        }
        with running_api(amqp_url, tmp_path, **env) as api:
            async with api.client() as client:
                proxy.freeze()  # the publish goes out and its confirm never comes back
                sending = asyncio.create_task(
                    client.post(
                        "/events",
                        content=json.dumps({"type": "ci.torn", "id": "torn-1"}),
                        headers={"content-type": "application/cloudevents+json"},
                        timeout=30,
                    )
                )
                await asyncio.sleep(1)
                proxy.restore()  # drops the frozen connection: its pending confirm is torn
                response = await sending
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
