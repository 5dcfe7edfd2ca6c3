"""An instant OpenAI-compatible upstream for bench/routing_overhead.py (starlette +
uvicorn on 127.0.0.1): a canned completion at once, or 3 SSE chunks then [DONE].
Usage: python bench/instant_upstream.py PORT_FILE"""

from __future__ import annotations

import json
import os
import socket
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

COMPLETION = {
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": "fake",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello from fake upstream."}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}
BODY = json.dumps(COMPLETION).encode()


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    return ("data: " + json.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
        "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        + "\n\n").encode()


CHUNKS = [_chunk({"role": "assistant", "content": "Hello"}), _chunk({"content": " from"}),
          _chunk({"content": " fake."}, "stop"), b"data: [DONE]\n\n"]


async def chat(request: Request) -> Response:
    body = await request.json()
    if body.get("stream"):
        async def gen():  # type: ignore[no-untyped-def]
            for c in CHUNKS:
                yield c
        return StreamingResponse(gen(), media_type="text/event-stream")
    return Response(BODY, media_type="application/json")


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                        Route("/v1/models", models)])

if __name__ == "__main__":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(sock.getsockname()[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                  lifespan="off")).run(sockets=[sock])
