"""The fast path in memory: a route served directly is documented as FastAPI would document it,
answers with the bytes Starlette's Response would send, reads its body within the limit, and
is what its docstring says it is (no middleware, its own exception handlers)."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from hub_api.fast_path import BodyTooLarge, DirectRequest, DirectRouter, HubApi, Reply
from starlette.requests import ClientDisconnect

DECLARED: dict[str, Any] = {"status_code": 202, "responses": {404: {"description": "unknown"}}}


def http_scope(
    method: str, path: str, headers: tuple[tuple[bytes, bytes], ...] = (), query: bytes = b""
) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
    }


def receiving(*messages: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        return pending.pop(0)

    return receive


async def answer_of(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receiving({"type": "http.request", "body": body}), send)
    return sent


def direct_app() -> HubApi:
    app = HubApi(title="t", version="1")

    @app.serve_directly("/things/{name}", "POST", **DECLARED)
    async def receive_thing(request: DirectRequest) -> Reply:
        """Take a thing."""
        body = await request.body(limit_bytes=10)
        return Reply(202, request.path_params["name"].encode() + body, "text/plain")

    @app.serve_directly("/things/{name}", "GET", **DECLARED)
    async def show_thing(request: DirectRequest) -> Reply:
        """Show a thing."""
        raise LookupError(request.path_params["name"])

    @app.direct_exception_handler(HTTPException)
    def refuse(request: DirectRequest, exc: HTTPException) -> Reply:
        return Reply(exc.status_code, exc.detail.encode(), "text/plain", exc.headers)

    return app


def test_a_route_served_directly_is_documented_as_fastapi_documents_it():
    plain = FastAPI(title="t", version="1")

    @plain.post("/things/{name}", **DECLARED)
    async def receive_thing(request: Request) -> Response:
        """Take a thing."""
        return Response()

    @plain.get("/things/{name}", **DECLARED)
    async def show_thing(request: Request) -> Response:
        """Show a thing."""
        return Response()

    assert direct_app().openapi() == plain.openapi()


@pytest.mark.parametrize(
    ("status", "body", "media_type", "headers"),
    [
        (202, b'{"id":"1"}', "application/json", {"x-correlation-id": "c-1"}),
        (503, b"{}", "application/json", {"Retry-After": "5"}),
        (200, b"challenge", "text/plain", None),
        (200, b"<Response/>", "text/xml", {"X-Hookhub-Event-Id": "e-1"}),
        (200, b"x", "text/plain; charset=latin-1", None),
        (204, b"", "application/json", None),
        (200, b"", "application/json", {"content-type": "text/csv", "content-length": "0"}),
    ],
)
def test_a_reply_has_the_headers_starlette_gives_the_same_response(
    status, body, media_type, headers
):
    reply = Reply(status, body, media_type, headers)
    assert reply.raw_headers() == Response(body, status, headers, media_type).raw_headers


async def test_a_route_served_directly_answers_with_its_reply():
    sent = await answer_of(direct_app(), http_scope("POST", "/things/lamp"), b"!")
    assert sent == [
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-length", b"5"), (b"content-type", b"text/plain; charset=utf-8")],
        },
        {"type": "http.response.body", "body": b"lamp!"},
    ]


async def test_a_route_declared_on_a_direct_router_is_served_by_the_app_including_it():
    router = DirectRouter()

    @router.serve_directly("/things/{name}", "POST", **DECLARED)
    async def receive_thing(request: DirectRequest) -> Reply:
        """Take a thing."""
        return Reply(202, request.app.title.encode(), "text/plain")

    app = HubApi(title="the app including it", version="1")
    app.include_direct_router(router)
    sent = await answer_of(app, http_scope("POST", "/things/lamp"))

    assert (sent[0]["status"], sent[1]["body"]) == (202, b"the app including it")
    operation = app.openapi()["paths"]["/things/{name}"]["post"]
    assert (operation["operationId"], operation["description"]) == (
        "receive_thing_things__name__post",
        "Take a thing.",
    )


async def test_a_method_the_path_does_not_serve_is_refused_naming_every_method_it_serves():
    sent = await answer_of(direct_app(), http_scope("PUT", "/things/lamp"))
    assert sent[0]["status"] == 405
    assert (b"allow", b"GET, POST") in sent[0]["headers"]


async def test_an_exception_without_a_direct_handler_reaches_the_server():
    with pytest.raises(LookupError, match="lamp"):
        await answer_of(direct_app(), http_scope("GET", "/things/lamp"))


async def test_middleware_and_the_apps_exception_handlers_do_not_see_routes_served_directly():
    app = direct_app()
    seen: list[str] = []

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        seen.append(request.url.path)
        return await call_next(request)

    @app.exception_handler(LookupError)
    async def not_found(request: Request, exc: LookupError) -> Response:
        return Response(status_code=404)

    await answer_of(app, http_scope("POST", "/things/lamp"))
    with pytest.raises(LookupError):
        await answer_of(app, http_scope("GET", "/things/lamp"))
    await answer_of(app, http_scope("GET", "/openapi.json"))  # served by FastAPI as usual
    assert seen == ["/openapi.json"]


async def test_a_body_sent_in_chunks_is_read_whole():
    receive = receiving(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"cd"},
    )
    request = DirectRequest(http_scope("POST", "/"), receive, {})
    assert await request.body(limit_bytes=4) == b"abcd"


async def test_a_body_over_the_limit_is_refused_as_soon_as_it_is_known():
    declared = http_scope("POST", "/", ((b"content-length", b"11"),))
    with pytest.raises(BodyTooLarge):  # by its Content-Length, before anything is read
        await DirectRequest(declared, receiving(), {}).body(limit_bytes=10)

    endless = receiving(*[{"type": "http.request", "body": b"x" * 4, "more_body": True}] * 3)
    with pytest.raises(BodyTooLarge):  # no Content-Length: while it is read
        await DirectRequest(http_scope("POST", "/"), endless, {}).body(limit_bytes=10)


async def test_a_client_that_leaves_before_its_body_ends_is_a_client_disconnect():
    receive = receiving(
        {"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnect):
        await DirectRequest(http_scope("POST", "/"), receive, {}).body(limit_bytes=10)


def test_the_first_of_a_repeated_header_and_the_last_of_a_repeated_parameter_count():
    scope = http_scope(
        "GET", "/things/a/b", ((b"x-one", b"first"), (b"x-one", b"second")), b"a=1&a=2&b"
    )
    scope["raw_path"] = b"/things/a%2Fb"  # as sent; the path is decoded
    request = DirectRequest(scope, receiving(), {})
    assert request.headers["x-one"] == "first"
    assert (request.query["a"], request.query["b"]) == ("2", "")
    assert request.target == "/things/a%2Fb?a=1&a=2&b"
