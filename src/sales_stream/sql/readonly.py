"""What the read-only BI login (Tableau's) may run on the PostgreSQL endpoint.

A statement is allowed when it only reads: ``SELECT`` (and set operations) over the
project's readable relations and the catalogue (``pg_catalog``, ``information_schema``),
cursors over such a ``SELECT`` (``DECLARE``/``FETCH``/``CLOSE``), ``SET``/``SHOW``/``RESET``,
transaction control, and the session's own temporary tables (Tableau creates some for big
filters). Anything else — ``INSERT``/``UPDATE``/``DELETE``/``MERGE``/``TRUNCATE``/``COPY``,
DDL, ``SELECT ... INTO``, a data-modifying ``WITH``, functions with side effects, a
relation outside the readable set (such as ``dead_letters``) — is refused with the reason.

Pure sqlglot: the database's launcher applies it to the statements it has parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

#: Schemas whose relations are the catalogue, readable by any login.
CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
#: Functions that change state although called from a ``SELECT``.
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "nextval",
        "setval",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_notify",
        "pg_reload_conf",
    }
)
#: Statement verbs (parsed as raw commands) that change nothing stored.
SESSION_VERBS = frozenset(
    {"FETCH", "MOVE", "CLOSE", "SHOW", "RESET", "DISCARD", "DEALLOCATE", "LISTEN", "UNLISTEN"}
)
TRANSACTION_VERBS = frozenset(
    {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE"}
)
_TEMP_TABLE = re.compile(
    r"^\s*CREATE\s+(?:(?:LOCAL|GLOBAL)\s+)?TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(\"(?:[^\"]|\"\")+\"|[\w$]+)",
    re.IGNORECASE,
)
_CURSOR_QUERY = re.compile(r"\bCURSOR\b.*?\bFOR\b(.*)$", re.IGNORECASE | re.DOTALL)
_EXPLAIN = re.compile(
    r"^\s*EXPLAIN\b(?:\s*\([^)]*\))?(?:\s+(?:ANALYZE|VERBOSE))*(.*)$", re.I | re.S
)


class Refused(Exception):
    """The statement is not allowed for the read-only login; ``str()`` says why."""


@dataclass
class ReadOnlyPolicy:
    """The rules for one session of the read-only login.

    Args:
        readable: The relations of the public schema the login may read.
        user: The login's name, for messages.
    """

    readable: frozenset[str]
    user: str = "tableau"
    temp_tables: set[str] = field(default_factory=set)

    def check(self, stmt: exp.Expression) -> None:
        """Return if ``stmt`` only reads what the login may read, else raise `Refused`."""
        if isinstance(stmt, exp.Command):
            self._check_command(stmt)
        elif isinstance(stmt, (exp.Select, exp.SetOperation, exp.Subquery)):
            self._check_query(stmt)
        elif isinstance(stmt, (exp.Set, exp.Show, exp.Transaction, exp.Commit, exp.Rollback)):
            return
        elif isinstance(stmt, exp.Alias) and isinstance(stmt.this, exp.Column):
            return  # how sqlglot reads ``CLOSE name`` / ``DISCARD ALL``
        elif isinstance(stmt, exp.Create) and stmt.find(exp.TemporaryProperty):
            if isinstance(stmt.expression, exp.Query):
                self._check_query(stmt.expression)
            self._create_temp(_name(stmt.this))
        elif isinstance(stmt, (exp.Insert, exp.Delete, exp.Drop, exp.TruncateTable, exp.Update)):
            self._check_temp_write(stmt)
        else:
            raise self._refused(f"{type(stmt).__name__.upper()} statements")

    def check_sql(self, sql: str) -> None:
        """Parse ``sql`` (PostgreSQL) and `check` each statement."""
        try:
            statements = sqlglot.parse(sql, read="postgres")
        except sqlglot.errors.ParseError as exc:
            raise Refused(f"cannot parse the statement for the read-only check: {exc}") from None
        for stmt in statements:
            if stmt is not None:
                self.check(stmt)

    def _refused(self, what: str) -> Refused:
        return Refused(f"permission denied: the login {self.user!r} is read-only ({what})")

    def _check_command(self, stmt: exp.Command) -> None:
        verb = str(stmt.this).upper()
        text = f"{stmt.this} {_command_tail(stmt)}"
        if verb in SESSION_VERBS or verb in TRANSACTION_VERBS or verb == "SET":
            return
        if verb == "DECLARE" and (query := _CURSOR_QUERY.search(text)):
            self.check_sql(query.group(1))
            return
        if verb == "EXPLAIN" and (query := _EXPLAIN.match(text)):
            self.check_sql(query.group(1))
            return
        if verb == "CREATE" and (temp := _TEMP_TABLE.match(text)):
            self._create_temp(temp.group(1).strip('"').replace('""', '"'))
            return
        raise self._refused(f"{verb} statements")

    def _check_query(self, stmt: exp.Expression) -> None:
        if stmt.find(exp.Insert, exp.Update, exp.Delete, exp.Merge) is not None:
            raise self._refused("a WITH clause that writes")
        if stmt.find(exp.Into) is not None:
            raise self._refused("SELECT ... INTO creates a table")
        for function in stmt.find_all(exp.Func):
            name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
            name = name.lower()
            if name in SIDE_EFFECT_FUNCTIONS or name.startswith("lo_"):
                raise self._refused(f"function {name}() changes state")
        ctes = {cte.alias_or_name.lower() for cte in stmt.find_all(exp.CTE)}
        for table in stmt.find_all(exp.Table):
            self._check_readable(table, ctes)

    def _check_readable(self, table: exp.Table, ctes: set[str]) -> None:
        name, schema = table.name.lower(), table.db.lower()
        if not name or isinstance(table.this, exp.Func):
            return  # a set-returning function such as generate_series(...)
        if table.catalog:
            raise self._refused(f"relation {table.sql(dialect='postgres')} names another database")
        if schema in CATALOG_SCHEMAS or (not schema and name.startswith("pg_")):
            return
        if schema in ("", "public") and (name in self.readable or name in ctes):
            return
        if not schema and name in self.temp_tables:
            return
        raise self._refused(f"relation {table.sql(dialect='postgres')} is not readable")

    def _create_temp(self, name: str) -> None:
        if name.lower() in self.readable:
            raise self._refused(f"a temporary table may not shadow {name}")
        self.temp_tables.add(name.lower())

    def _check_temp_write(self, stmt: exp.Expression) -> None:
        """Writes are allowed on the session's own temporary tables only."""
        if isinstance(stmt, exp.Drop):
            targets = [_name(table) for table in stmt.args.get("tables") or [stmt.this]]
            if not targets or not all(t in self.temp_tables for t in targets):
                raise self._refused(f"DROP of {', '.join(targets) or 'this relation'}")
            self.temp_tables.difference_update(targets)
            return
        target = _name(stmt.this)
        if target not in self.temp_tables:
            raise self._refused(f"{stmt.key.upper()} on {target or 'this relation'}")
        source = stmt.expression if isinstance(stmt, exp.Insert) else None
        if isinstance(source, exp.Query):
            self._check_query(source)
        others = [t for t in stmt.find_all(exp.Table) if _name(t) != target]
        for table in others:
            self._check_readable(table, set())


def _name(node: exp.Expression | None) -> str:
    if isinstance(node, exp.Schema):
        node = node.this
    return node.name.lower() if isinstance(node, exp.Table) else ""


def _command_tail(stmt: exp.Command) -> str:
    arg = stmt.expression
    return str(arg.name if isinstance(arg, exp.Literal) else (arg or "")).strip()
