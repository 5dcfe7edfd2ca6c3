"""Tool calls through the router: broken calls from real HTTP upstreams (bad JSON, unknown
tool, schema mismatch, no call) are caught, recorded per model, retried on the next model,
and shown by `memoryd report`; streamed tools requests are checked before the client sees
a byte. The checker and the embedded model's tool format are pinned on their own too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from daemon.routing.router import AllFailed, Ask
from daemon.routing.telemetry import summary
from daemon.routing.toolcalls import check, message_from_events, request_error
from models import tool_format
from tests.conftest import run_cli
from tests.daemon.routing.test_routing import event_loop, make_router, run  # noqa: F401 (autouse loop)
from tests.daemon.upstream_fixtures import model_entry

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers",
    "parameters": {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def tools_body(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 64,
            "tools": [WEATHER, ADD], **extra}


def call(name: str, args: str) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}


# ---- the checker on its own --------------------------------------------------------------
@pytest.mark.parametrize(("message", "choice", "why"), [
    ({"tool_calls": [call("get_weather", '{"city": "Paris"}')]}, "auto", None),
    ({"tool_calls": [call("get_weather", '{"city": "Paris"')]}, "auto", "bad_json"),
    ({"tool_calls": [call("get_weather", '["Paris"]')]}, "auto", "bad_json"),
    ({"tool_calls": [call("rm_rf", "{}")]}, "auto", "unknown_tool"),
    ({"tool_calls": [call("get_weather", '{"unit": "c"}')]}, "auto", "schema_mismatch"),
    ({"tool_calls": [call("get_weather", '{"city": "Paris", "unit": "kelvin"}')]}, "auto",
     "schema_mismatch"),
    ({"tool_calls": [call("add", '{"a": 1, "b": 2}')]}, NAMED, "wrong_tool"),
    ({"content": "It is sunny."}, NAMED, "no_call"),
    ({"content": "It is sunny."}, "required", "no_call"),
    ({"content": "It is sunny."}, "auto", None),
    ({"tool_calls": [call("add", '{"a": 1, "b": 2}')]}, "none", "unexpected_call"),
    ({"tool_calls": "get_weather"}, "auto", "malformed"),
    ({"tool_calls": [{"type": "function"}]}, "auto", "malformed"),
])
def test_check_names_what_is_wrong_with_a_tool_call(message: dict[str, Any], choice: Any,
                                                    why: str | None) -> None:
    fault = check(tools_body(tool_choice=choice), message)
    assert (fault.why if fault else None) == why
    if fault:
        assert fault.error_class == f"bad_tool_call:{why}" and fault.detail


@pytest.mark.parametrize(("tools", "choice", "problem"), [
    ([WEATHER], None, None), ([WEATHER], "auto", None), ([WEATHER], "required", None),
    ([WEATHER], NAMED, None), (None, "none", None),
    ({"get_weather": {}}, None, "must be a list"),
    ([{"type": "function"}], None, "tools[0] needs"),
    ([{"type": "function", "function": {"name": "f", "parameters": "x"}}], None,
     "JSON schema object"),
    ([ADD], NAMED, "not among the offered tools"),
    (None, "required", "offers no tools"),
    ([WEATHER], "always", "tool_choice must be"),
])
def test_a_malformed_tools_request_is_refused_up_front(tools: Any, choice: Any,
                                                       problem: str | None) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if tools is not None:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    got = request_error(body)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_streamed_tool_call_deltas_are_assembled() -> None:
    def ev(delta: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}).encode()

    # OpenAI sends the name once; llama-cpp-python repeats it in every chunk.
    events = [ev({"role": "assistant", "tool_calls": [
        {"index": 0, "id": "a", "function": {"name": "get_weather", "arguments": '{"ci'}}]}),
        ev({"tool_calls": [{"index": 0, "function": {"name": "get_weather",
                                                      "arguments": 'ty": "Oslo"}'}}]}),
        ev({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "add",
                                                                 "arguments": '{"a": 1'}}]}),
        ev({"tool_calls": [{"index": 1, "function": {"arguments": ', "b": 2}'}}]}),
        b"data: [DONE]"]
    msg = message_from_events(events)
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in msg["tool_calls"]] == [("a", "get_weather", {"city": "Oslo"}),
                                            ("b", "add", {"a": 1, "b": 2})]
    assert check(tools_body(), msg) is None


def test_embedded_tool_format_parses_calls_and_leaves_prose_alone() -> None:
    calls = tool_format.parse('{"name": "add", "arguments": {"a": 2, "b": 40}}\n'
                              '<tool_call>{"name": "get_weather", "arguments": '
                              '{"city": "Oslo"}}</tool_call>')
    assert calls is not None
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("add", {"a": 2, "b": 40}), ("get_weather", {"city": "Oslo"})]
    assert tool_format.parse("The answer is 42.") is None
    assert tool_format.parse('{"city": "Oslo"}') is None  # JSON, but not a call
    assert tool_format.parse('{"name": "add", "arguments": {"a": 2}} and then prose') is None
    msgs, schema = tool_format.prepare(
        [{"role": "assistant", "content": None, "tool_calls": [call("add", '{"a": 1}')]},
         {"role": "tool", "tool_call_id": "c1", "content": "1"}], [WEATHER, ADD], "required")
    assert msgs[0]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert schema is not None
    assert [o["properties"]["name"]["const"] for o in schema["oneOf"]] == ["get_weather", "add"]


# ---- the router against real HTTP upstreams ------------------------------------------------
@pytest.mark.parametrize("mode", ["tool_bad_json", "tool_unknown", "tool_schema", "tool_text"])
def test_broken_tool_call_falls_back_to_the_next_model(tmp_path: Path, upstreams: Any,
                                                       mode: str) -> None:
    broken, good = upstreams("broken"), upstreams("good")
    broken.mode(mode)
    good.mode("tool_call")
    router = make_router(tmp_path, [model_entry(broken), model_entry(good)],
                         {"default": ["broken", "good"]})
    body = tools_body(tool_choice=NAMED)
    routed = run(router.complete(dict(body), Ask()))
    assert routed.model == "good" and routed.depth == 1
    calls = routed.data["choices"][0]["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"])["city"]
    why = {"tool_bad_json": "bad_json", "tool_unknown": "unknown_tool",
           "tool_schema": "schema_mismatch", "tool_text": "no_call"}[mode]
    assert routed.attempts[0] == {"model": "broken", "outcome": "error",
                                  "error": f"bad_tool_call:{why}"}
    assert broken.stats()["last"]["tools"] == [WEATHER, ADD]  # passed through as sent
    assert broken.stats()["last"]["tool_choice"] == NAMED
    assert router.breakers["broken"].state == "closed"  # the backend works; its calls don't
    router.telemetry.flush()
    got = summary(router.telemetry.path)
    rows = {r["model"]: r for r in got["tool_calls"]}
    assert (rows["broken"]["answers"], rows["broken"]["malformed"],
            rows["broken"]["repaired"]) == (1, 1, 1)
    assert rows["broken"]["faults"] == f"{why}:1"
    assert (rows["good"]["malformed"], rows["good"]["malformed_rate"]) == (0, 0)
    assert got["tool_call_repairs"] == [{"failed_model": "broken", "fault": why,
                                         "repaired_by": "good", "times": 1}]


def test_a_backend_that_refuses_tools_passes_the_request_on(tmp_path: Path,
                                                          upstreams: Any) -> None:
    old, good = upstreams("old"), upstreams("good")
    old.mode("no_tools")
    good.mode("tool_call")
    router = make_router(tmp_path, [model_entry(old), model_entry(good)],
                         {"default": ["old", "good"]})
    routed = run(router.complete(tools_body(), Ask()))
    assert routed.model == "good"
    assert routed.attempts[0] == {"model": "old", "outcome": "error", "error": "bad_request"}
    plain = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    assert run(router.complete(plain, Ask())).model == "old"  # its circuit is untouched


def test_a_request_without_tools_is_not_checked(tmp_path: Path, upstreams: Any) -> None:
    up = upstreams("plain")
    up.mode("tool_text")
    router = make_router(tmp_path, [model_entry(up)], {"default": ["plain"]})
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    assert run(router.complete(body, Ask())).model == "plain"
    router.telemetry.flush()
    assert summary(router.telemetry.path)["tool_calls"] == []


def test_streamed_tools_request_is_checked_before_the_client_sees_it(tmp_path: Path,
                                                                     upstreams: Any) -> None:
    broken, good = upstreams("broken"), upstreams("good")
    broken.mode("tool_bad_json")
    good.mode("tool_call")
    router = make_router(tmp_path, [model_entry(broken), model_entry(good)],
                         {"default": ["broken", "good"]})

    async def collect() -> tuple[Any, list[bytes]]:
        started = await router.stream(tools_body(tool_choice="required"), Ask())
        return started, [e async for e in started.events]

    started, events = run(collect())
    assert started.model == "good" and started.depth == 1
    assert [a["model"] for a in started.attempts] == ["broken", "good"]
    assert not any(b"broken" in e or b"no_such" in e for e in events)  # nothing of broken's
    msg = message_from_events(events)
    assert check(tools_body(tool_choice="required"), msg) is None
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"])["city"]
    assert events[-1] == b"data: [DONE]\n\n"
    router.telemetry.flush()
    rows = {r["model"]: r for r in summary(router.telemetry.path)["tool_calls"]}
    assert rows["broken"]["malformed"] == 1 and rows["good"]["answers"] == 1


def test_when_every_model_breaks_its_tool_calls_the_error_names_each(
        tmp_path: Path, upstreams: Any) -> None:
    a, b = upstreams("a"), upstreams("b")
    a.mode("tool_unknown")
    b.mode("tool_bad_json")
    router = make_router(tmp_path, [model_entry(a), model_entry(b)], {"default": ["a", "b"]},
                         retries=0)
    with pytest.raises(AllFailed) as err:
        run(router.complete(tools_body(), Ask()))
    assert [(m, e.kind) for m, e in err.value.errors] == [
        ("a", "bad_tool_call:unknown_tool"), ("b", "bad_tool_call:bad_json")]
    assert "no_such_tool" in str(err.value) and "not JSON" in str(err.value)


def test_through_the_daemon_openai_client_report_and_clear_502(
        make_config: Any, start_daemon: Any, upstreams: Any) -> None:
    broken, good = upstreams("broken"), upstreams("good")
    broken.mode("tool_unknown")
    good.mode("tool_call")
    config = make_config(router={"models": [model_entry(broken), model_entry(good)],
                                 "routes": {"default": ["broken", "good"],
                                            "code": ["broken"]}})
    d = start_daemon(config)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{d.port}/v1", api_key=d.token,
                           max_retries=0, timeout=60)
    messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
    out = client.chat.completions.create(model="auto", messages=messages,
                                         tools=[WEATHER, ADD],  # type: ignore[list-item]
                                         tool_choice=NAMED)  # type: ignore[arg-type]
    assert out.choices[0].finish_reason == "tool_calls"
    tool_call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    chunks = list(client.chat.completions.create(
        model="auto", messages=messages, stream=True, tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required"))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    args = "".join(tc.function.arguments or "" for tc in deltas if tc.function)
    assert deltas[0].function and deltas[0].function.name == "get_weather"
    assert json.loads(args)["city"]
    # A tool result goes back to the model as a `tool` message, passed through as sent.
    follow = [*messages, {"role": "assistant", "content": None, "tool_calls": [
        {"id": tool_call.id, "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": tool_call.id, "content": "18 C, sunny"}]
    client.chat.completions.create(model="good", messages=follow, tools=[WEATHER])  # type: ignore[list-item]
    assert good.stats()["last"]["messages"][-1] == follow[-1]
    # A request that names a tool it does not offer is the caller's to fix: a 400.
    with pytest.raises(openai.BadRequestError, match="not among the offered tools"):
        client.chat.completions.create(model="auto", messages=messages, tools=[ADD],  # type: ignore[list-item]
                                       tool_choice=NAMED)  # type: ignore[arg-type]
    # Only the broken model on this route: a clear 502 that names its fault.
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="auto", messages=messages, tools=[WEATHER],  # type: ignore[list-item]
                                       extra_headers={"X-Memoryd-Task": "code"})
    assert err.value.status_code == 502
    assert "broken: bad_tool_call:unknown_tool" in str(err.value.message)
    with d.unix() as c:
        assert c.get("/health").status_code == 200
    report = run_cli(config, "report").stdout
    section = report[report.index("Tool calling"):]
    row = next(line.split() for line in section.splitlines() if line.split()[:1] == ["broken"])
    # answers, malformed, rate, repaired: the code route tried broken twice (one retry pass)
    assert row[1:5] == ["4", "4", "1.0", "2"]
    assert "unknown_tool:4" in section
    assert any(line.split() == ["broken", "unknown_tool", "good", "2"]
               for line in section.splitlines())
