"""LanceDB filter text: quoted strings, and filters that name rows by id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

IDS_PER_FILTER = 500  # ids one `IN (…)` filter names: each query's filter stays small


def sql_str(value: str) -> str:
    """Quote `value` as an SQL string literal for a LanceDB filter."""
    return "'" + value.replace("'", "''") + "'"


def id_filters(ids: Iterable[str], column: str = "id") -> Iterator[tuple[list[str], str]]:
    """`(part, "column IN (…)")` for each IDS_PER_FILTER of `ids`, in their order; nothing
    for no ids (an empty `IN ()` is not a filter LanceDB reads)."""
    every = list(ids)
    for n in range(0, len(every), IDS_PER_FILTER):
        part = every[n:n + IDS_PER_FILTER]
        yield part, f"{column} IN ({', '.join(sql_str(i) for i in part)})"
