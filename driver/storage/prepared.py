"""The hot path's statements, compiled once per dialect and run straight on the driver's cursor.

A Docker call is a handful of tiny statements. On SQLite, SQLAlchemy's execution machinery
(compiled-cache lookup, parameter construction, events, the result object) costs three to four
times what SQLite spends running such a statement. A :class:`Prepared` statement is written
with SQLAlchemy Core like any other, compiled once for each dialect it meets, and then run on
the DBAPI connection of the transaction's :class:`~sqlalchemy.Connection`, inside that
transaction. Driver errors are raised as SQLAlchemy's own, so that the store tells conflicts and
lost connections apart exactly as for Core statements.

Rows come back as tuples, their values converted as SQLAlchemy would (a time stored as text by
SQLite becomes a ``datetime``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

Row = tuple[Any, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # the bind names in the order of the driver's placeholders; None for named placeholders
    positions: tuple[str, ...] | None
    defaults: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        merged = {**self.defaults, **values} if self.defaults else dict(values)
        for name, process in self.processors.items():
            if merged.get(name) is not None:
                merged[name] = process(merged[name])
        if self.positions is None:
            return merged
        return tuple(merged[name] for name in self.positions)


class Prepared:
    """A Core statement run without SQLAlchemy's per-execution work."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}
        # per dialect: how to convert each column of a result, learnt from its first one
        self._results: dict[str, tuple[Callable[[Any], Any] | None, ...]] = {}

    def _compiled(self, connection: Connection) -> _Compiled:
        dialect = connection.dialect
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            built = cast(SQLCompiler, self.statement.compile(dialect=dialect))
            processors = {}
            for name, bind in built.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors[name] = process
            compiled = _Compiled(
                sql=built.string,
                positions=tuple(built.positiontup or ()) if built.positional else None,
                defaults={k: v for k, v in built.params.items() if v is not None},
                processors=processors,
            )
            self._by_dialect[dialect.name] = compiled
        return compiled

    def rows(self, connection: Connection, values: Mapping[str, Any]) -> list[Row]:
        """Run the statement in the connection's transaction; the rows it returned."""
        return self._run(connection, values, lambda cursor: self._fetch(connection, cursor))

    def _fetch(self, connection: Connection, cursor: Any) -> list[Row]:
        if cursor.description is None:
            return []
        fetched = cursor.fetchall()
        dialect = connection.dialect
        convert = self._results.get(dialect.name)
        if convert is None:
            columns = getattr(self.statement, "exported_columns", ())
            convert = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(columns, cursor.description, strict=True)
            )
            self._results[dialect.name] = convert
        if not any(convert):
            return list(fetched)
        return [
            tuple(
                value if c is None or value is None else c(value)
                for c, value in zip(convert, row, strict=True)
            )
            for row in fetched
        ]

    def first(self, connection: Connection, values: Mapping[str, Any]) -> Row | None:
        found = self.rows(connection, values)
        return found[0] if found else None

    def count(self, connection: Connection, values: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        return self._run(connection, values, lambda cursor: int(cursor.rowcount))

    def _run(
        self, connection: Connection, values: Mapping[str, Any], result: Callable[[Any], T]
    ) -> T:
        compiled = self._compiled(connection)
        parameters = compiled.parameters(values)
        driver = connection.connection.driver_connection
        dbapi = connection.dialect.loaded_dbapi
        try:
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(compiled.sql, parameters)
                return result(cursor)
            finally:
                cursor.close()
        except dbapi.Error as e:
            raise DBAPIError.instance(
                compiled.sql,
                parameters,
                e,
                dbapi.Error,
                connection_invalidated=connection.dialect.is_disconnect(e, driver, None),
                dialect=connection.dialect,
            ) from e
