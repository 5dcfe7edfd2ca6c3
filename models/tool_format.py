"""Tool calls for the embedded llama.cpp model, in and out of OpenAI's shape.

The bundled Qwen2.5 GGUF carries its own chat template, which lists the offered tools in
the system prompt and renders tool results (`role: tool`) and earlier calls; the model
answers a call as `{"name": ..., "arguments": {...}}` (between `<tool_call>` tags, which
are special tokens and do not reach the text). llama-cpp-python turns a *named*
`tool_choice` into OpenAI `tool_calls` itself (with a grammar from the tool's schema);
for `auto` it returns the call as text, and it ignores `required`. So here:

- `prepare` gives the template what it expects (arguments as objects, not strings) and,
  for `required`, a JSON schema that forces one call to one of the offered tools;
- `parse` turns a text answer that consists only of such calls into OpenAI `tool_calls`.

Why not llama-cpp-python's `chatml-function-calling` format for the embedded model (read
in 0.3.36): its template drops `role: tool` messages, lists the tools only when the
request has a system message, has no `required`, and would replace the model's own
template for every other call too (the memory pipeline's summaries). It is a fine choice
for `python -m llama_cpp.server --chat_format chatml-function-calling`, which the tests
use as an upstream.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

_TAGS = re.compile(r"</?tool_call>")


def prepare(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
            tool_choice: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Given a tools request, return the messages for the chat template and, when
    tool_choice is "required", the JSON schema that forces a call (else None)."""
    out = []
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if isinstance(calls, list):
            fixed = []
            for c in calls:
                fn = dict(c.get("function") or {}) if isinstance(c, dict) else {}
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        pass
                fixed.append({**c, "function": fn} if isinstance(c, dict) else c)
            m = {**m, "tool_calls": fixed}
        out.append(m)
    schema = None
    if tool_choice == "required" and tools:
        schema = {"oneOf": [{
            "type": "object", "required": ["name", "arguments"],
            "properties": {"name": {"const": t["function"]["name"]},
                           "arguments": t["function"].get("parameters") or {"type": "object"}}}
            for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]}
    return out, schema


def parse(text: str) -> list[dict[str, Any]] | None:
    """Given a model's text answer, return its OpenAI `tool_calls` when the text is
    nothing but `{"name": ..., "arguments": ...}` objects (one or more), else None.

    The names are not checked against the offered tools here: the harness does that, so
    a call to a tool nobody offered is reported as such rather than passed off as text."""
    body = _TAGS.sub(" ", text).strip()
    if not body.startswith("{"):
        return None
    decoder = json.JSONDecoder()
    calls, i = [], 0
    while i < len(body):
        try:
            obj, end = decoder.raw_decode(body, i)
        except ValueError:
            return None
        if not (isinstance(obj, dict) and isinstance(obj.get("name"), str)
                and "arguments" in obj):
            return None
        args = obj["arguments"]
        calls.append({"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                      "function": {"name": obj["name"],
                                   "arguments": args if isinstance(args, str)
                                   else json.dumps(args, ensure_ascii=False)}})
        i = end
        while i < len(body) and body[i] in " \t\r\n,":
            i += 1
    return calls or None
