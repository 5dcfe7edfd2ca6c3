"""Checking a model's tool calls against the tools the request offered.

A small model (or a careless upstream) may answer a tools request with a call the caller
cannot run: arguments that are not JSON, a tool nobody offered, arguments that break the
tool's JSON schema, or no call at all where `tool_choice` demanded one. `check` finds
that before the caller sees it; the router then records `bad_tool_call:<why>` against the
model and asks the next model in the chain.

Given the request body and the answer's message (non-streamed) or its SSE events
(streamed, assembled by `message_from_events`), `check` returns None when the calls are
usable, else a `Fault` whose `why` is one of:

    malformed       tool_calls is not a list of {"type": "function", "function": {...}}
    unknown_tool    a call names a tool the request did not offer
    bad_json        a call's arguments are not a JSON object
    schema_mismatch a call's arguments do not match the tool's `parameters` schema
    no_call         tool_choice was "required" (or named a tool) and nothing was called
    wrong_tool      tool_choice named one tool and the model called another
    unexpected_call tool_choice was "none" and the model called a tool anyway
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Fault:
    why: str
    detail: str

    @property
    def error_class(self) -> str:
        return f"bad_tool_call:{self.why}"


def offers_tools(body: dict[str, Any]) -> bool:
    """True when the request offers tools, so its answer's calls get checked."""
    tools = body.get("tools")
    return isinstance(tools, list) and bool(tools)


def request_error(body: dict[str, Any]) -> str | None:
    """Given a chat request, return what is wrong with its `tools`/`tool_choice` (a
    message for the caller), or None. A request no model could answer well is refused
    up front rather than blamed on every model in the chain."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None and choice is None:
        return None
    if tools is not None and not isinstance(tools, list):
        return "tools must be a list of {\"type\": \"function\", \"function\": {...}}"
    names = []
    for i, tool in enumerate(tools or ()):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            return f"tools[{i}] needs {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            return f"tools[{i}].function.parameters must be a JSON schema object"
        names.append(fn["name"])
    if choice is None or choice in ("none", "auto"):
        return None
    if choice == "required" or _named_choice(choice):
        if not names:
            return "tool_choice asks for a tool call, but the request offers no tools"
        named = _named_choice(choice)
        if named and named not in names:
            return (f"tool_choice names {named!r}, which is not among the offered tools "
                    f"({', '.join(names)})")
        return None
    return ('tool_choice must be "none", "auto", "required" or {"type": "function", '
            '"function": {"name": ...}}')


def _schemas(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in body.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters")
    return out


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    import jsonschema  # on first use: most daemons never see a tools request

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _named_choice(choice: Any) -> str | None:
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return str(fn["name"])
    return None


def check(body: dict[str, Any], message: dict[str, Any]) -> Fault | None:
    """Given a tools request and the answer's message, return None or what is wrong."""
    schemas = _schemas(body)
    choice = body.get("tool_choice")
    named = _named_choice(choice)
    calls = message.get("tool_calls")
    if calls is None:
        calls = []
    if not isinstance(calls, list):
        return Fault("malformed", f"tool_calls is a {type(calls).__name__}, not a list")
    if not calls:
        if choice == "required" or named:
            want = f"a call to {named}" if named else "a tool call (tool_choice=required)"
            return Fault("no_call", f"the request asked for {want} and the model answered "
                                    "with text only")
        return None
    if choice == "none":
        return Fault("unexpected_call", "tool_choice was \"none\" and the model called "
                                        f"{len(calls)} tool(s)")
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return Fault("malformed", f"tool call {i} has no function name")
        name = fn["name"]
        if name not in schemas:
            return Fault("unknown_tool", f"tool call {i} names {name!r}, which the request "
                                         f"did not offer (offered: {', '.join(sorted(schemas))})")
        if named and name != named:
            return Fault("wrong_tool", f"tool_choice named {named!r} and the model called "
                                       f"{name!r}")
        raw = fn.get("arguments")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            return Fault("bad_json", f"{name}'s arguments are not JSON ({exc}): "
                                     f"{str(raw)[:120]!r}")
        if not isinstance(args, dict):
            return Fault("bad_json", f"{name}'s arguments are not a JSON object: "
                                     f"{str(raw)[:120]!r}")
        schema = schemas[name]
        if isinstance(schema, dict) and schema:
            from jsonschema.exceptions import SchemaError, ValidationError

            try:
                _validator(json.dumps(schema, sort_keys=True)).validate(args)
            except ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
                return Fault("schema_mismatch", f"{name}'s arguments do not match its schema "
                                                f"at {where}: {exc.message}")
            except SchemaError:
                pass  # the caller's schema is broken; that is not the model's fault
    return None


def answer_message(data: dict[str, Any]) -> dict[str, Any]:
    """The first choice's message of a non-streamed answer ({} when it has none)."""
    try:
        msg = data["choices"][0].get("message")
    except (KeyError, IndexError, TypeError, AttributeError):
        return {}
    return msg if isinstance(msg, dict) else {}


def message_from_events(events: Iterable[bytes]) -> dict[str, Any]:
    """Assemble a streamed answer's first choice (content and tool calls) from its SSE
    events: tool-call deltas are merged by `index`, their arguments concatenated."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for event in events:
        if not event.startswith(b"data: {"):
            continue
        try:
            chunk = json.loads(event[6:])
            choice = (chunk.get("choices") or [{}])[0]
        except (ValueError, AttributeError, IndexError):
            continue
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            content.append(delta["content"])
        for part in delta.get("tool_calls") or ():
            if not isinstance(part, dict):
                continue
            idx = part.get("index", len(calls))
            call = calls.setdefault(idx if isinstance(idx, int) else len(calls), {
                "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            if part.get("id"):
                call["id"] = part["id"]
            fn = part.get("function") or {}
            name = fn.get("name")
            if isinstance(name, str) and name != call["function"]["name"]:
                call["function"]["name"] += name
            if isinstance(fn.get("arguments"), str):
                call["function"]["arguments"] += fn["arguments"]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    return msg
