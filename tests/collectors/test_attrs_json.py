"""An event's attrs are stored as JSON exactly as json.dumps(sort_keys=True, default=str)
writes them (collectors.base.attrs_json keeps one C encoder instead of one per call)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.base import attrs_json

_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                  st.text(max_size=20))
_tree = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _tree, max_size=6))
def test_attrs_are_encoded_as_json_dumps_does(attrs: dict[str, object]) -> None:
    assert attrs_json(attrs) == json.dumps(attrs, sort_keys=True, default=str)


def test_what_json_cannot_say_is_written_as_its_string() -> None:
    attrs = {"when": datetime(2026, 12, 3, tzinfo=UTC), "path": PurePosixPath("/a/b")}
    assert json.loads(attrs_json(attrs)) == {"path": "/a/b",
                                             "when": "2026-12-03 00:00:00+00:00"}
