"""A real OpenAI-compatible HTTP server (uvicorn) that misbehaves on request.

Run as `python -m tests.daemon.fake_upstream PORT_FILE`; it binds 127.0.0.1:0 and writes
its port to PORT_FILE. `POST /control {"mode": ...}` switches behaviour at run time:
ok, error500, ratelimit (429 with Retry-After), hang (never answers), die_midstream (sends
two chunks, then the process exits), garbage (200 with a non-JSON body), and for
requests with `tools`: tool_call (a well-formed call to the named or first tool, its
arguments filled from the schema), tool_bad_json (arguments cut off mid-JSON),
tool_unknown (a call to a tool nobody offered), tool_schema (arguments missing the
required fields), tool_text (text, no call), no_tools (400 for any request with
`tools`, as a server without tool support answers; plain requests are answered). `GET /stats` tells how many chat calls it
got, so a test can prove a request never reached it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATE: dict[str, Any] = {"mode": "ok", "calls": 0, "name": "fake", "last": None}


def _answer(model: str, text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return ("data: " + json.dumps({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                   "created": int(time.time()), "model": model, "choices": [
                                       {"index": 0, "delta": delta, "finish_reason": finish}]})
            + "\n\n").encode()


def _fill(schema: dict[str, Any]) -> Any:
    """A value that satisfies a simple JSON schema (what a well-behaved model sends)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _fill(v) for k, v in (schema.get("properties") or {}).items()}
    return {"integer": 1, "number": 1.5, "boolean": True, "array": []}.get(str(kind), "x")


def _tool_call(body: dict[str, Any], mode: str) -> dict[str, Any] | None:
    tools = [t["function"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    fn = next((t for t in tools if t["name"] == named), tools[0] if tools else None)
    if mode == "tool_text" or fn is None:
        return None
    args = json.dumps(_fill(fn.get("parameters") or {"type": "object"}))
    name = fn["name"]
    if mode == "tool_bad_json":
        args = args[:-1] + ', "unit": '
    elif mode == "tool_unknown":
        name = "no_such_tool"
    elif mode == "tool_schema":
        args = "{}"
    return {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": args}}


async def chat(request: Request) -> Response:
    body = await request.json()
    STATE["calls"] += 1
    STATE["last"] = body
    mode, name = STATE["mode"], STATE["name"]
    model = body.get("model", "?")
    if mode == "error500":
        return JSONResponse({"error": {"message": "boom"}}, status_code=500)
    if mode == "ratelimit":
        return JSONResponse({"error": {"message": "slow down"}}, status_code=429,
                            headers={"retry-after": "1"})
    if mode == "hang":
        await asyncio.sleep(3600)
    if mode == "garbage":
        return Response(b"<html>not json</html>", media_type="text/html")
    if mode == "no_tools" and body.get("tools"):
        return JSONResponse({"error": {"message": "tools are not supported"}}, status_code=400)
    text = f"answer from {name}"
    if mode.startswith("tool_"):
        return _tools_answer(body, mode, model, text)
    if not body.get("stream"):
        return JSONResponse(_answer(model, text))

    async def events() -> Any:
        yield _chunk(model, {"role": "assistant", "content": ""})
        for word in text.split():
            yield _chunk(model, {"content": word + " "})
            await asyncio.sleep(0.01)
            if mode == "die_midstream":
                os._exit(1)  # a real crash: the connection drops mid-answer
        yield _chunk(model, {}, "stop")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _tools_answer(body: dict[str, Any], mode: str, model: str, text: str) -> Response:
    call = _tool_call(body, mode)
    if not body.get("stream"):
        data = _answer(model, text)
        if call is not None:
            data["choices"][0]["message"] = {"role": "assistant", "content": None,
                                             "tool_calls": [call]}
            data["choices"][0]["finish_reason"] = "tool_calls"
        return JSONResponse(data)

    async def events() -> Any:
        if call is None:
            yield _chunk(model, {"role": "assistant", "content": text})
            yield _chunk(model, {}, "stop")
        else:  # as OpenAI streams a call: id and name first, the arguments in pieces
            args = call["function"]["arguments"]
            yield _chunk(model, {"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                yield _chunk(model, {"tool_calls": [{"index": 0,
                                                     "function": {"arguments": piece}}]})
            yield _chunk(model, {}, "tool_calls")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": STATE["name"], "object": "model"}]})


async def embeddings(request: Request) -> Response:
    body = await request.json()
    STATE["calls"] += 1
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return JSONResponse({"object": "list", "data": [
        {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
        for i, t in enumerate(texts)], "model": body.get("model")})


async def control(request: Request) -> Response:
    STATE.update(await request.json())
    return JSONResponse(STATE)


async def stats(_: Request) -> Response:
    return JSONResponse(STATE)


app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                        Route("/v1/embeddings", embeddings, methods=["POST"]),
                        Route("/v1/models", models), Route("/control", control, methods=["POST"]),
                        Route("/stats", stats)])


def main() -> None:
    port_file = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    STATE["name"] = sys.argv[3] if len(sys.argv) > 3 else "fake"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    with open(port_file + ".tmp", "w") as fh:
        fh.write(str(sock.getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off")).run(sockets=[sock])


if __name__ == "__main__":
    main()
