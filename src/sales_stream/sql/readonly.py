"""What the read-only BI login (Tableau's) may run on the PostgreSQL endpoint: an allowlist.

A statement passes when it is one of:

* a read (``SELECT``, set operations, ``VALUES``) over the declared readable relations, the
  catalogue (``pg_catalog``, ``information_schema``), the session's own temporary tables and
  CTEs that shadow no existing relation; no nested write, no ``SELECT ... INTO``, no row lock,
  no function that changes state or runs SQL text (`DENIED_FUNCTIONS`);
* a cursor: ``DECLARE ... CURSOR FOR <read>``, ``FETCH``, ``MOVE``, ``CLOSE``; plain
  ``EXPLAIN <read>`` (never ``ANALYZE``);
* ``SET``/``SHOW``/``RESET`` of a session setting (not the role, the session authorization
  or how string literals are parsed), ``DISCARD``, ``DEALLOCATE``;
* transaction control (``BEGIN``, ``COMMIT``, ``ROLLBACK``, savepoints);
* ``CREATE TEMP TABLE`` with a name no relation or collection has, and ``INSERT``,
  ``UPDATE``, ``DELETE``, ``TRUNCATE``, ``DROP TABLE`` whose targets all *resolve* to the
  session's own temporary tables (``public.x`` never does).

Everything else — ``COPY``, ``MERGE``, DDL, ``DROP`` of anything else, ``DO``, ``CALL``,
SQL-level ``PREPARE``/``EXECUTE``, ``LISTEN``/``NOTIFY``, ``LOCK``, ``VACUUM`` ... — is
refused with the reason. The policy is pure sqlglot; what only the engine knows (how a name
resolves under the session's ``search_path``, whether a temporary table exists, which names
are taken) comes from a `Resolver`: the launcher's asks the engine itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import sqlglot
from sqlglot import exp

#: Schemas whose relations are the catalogue, readable by any login.
CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema"})
#: Functions that change state, sleep, or run SQL text given as a string.
DENIED_FUNCTIONS = frozenset(
    {
        "set_config",
        "nextval",
        "setval",
        "pg_notify",
        "pg_sleep",
        "pg_sleep_for",
        "pg_sleep_until",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_logical_emit_message",
        "loread",
        "lowrite",
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "schema_to_xml",
        "database_to_xml",
    }
)
#: Name prefixes of functions refused likewise (advisory locks, large objects, files...).
DENIED_FUNCTION_PREFIXES = (
    "pg_advisory",
    "pg_try_advisory",
    "lo_",
    "dblink",
    "pg_read_",
    "pg_ls_",
    "pg_file_",
    "pg_stat_reset",
    "pg_create_",
    "pg_drop_",
    "pg_replication_",
    "pg_switch_",
)
#: Words that make a ``SET`` change who the session is or how its SQL text is read.
DENIED_SETTING_WORDS = frozenset(
    {"role", "authorization", "standard_conforming_strings", "session_replication_role"}
)
#: Session commands sqlglot reads as ``<word> AS <alias>`` (``CLOSE c``, ``DISCARD ALL``...).
ALIAS_VERBS = frozenset({"close", "discard", "deallocate", "savepoint", "release"})
#: Session commands sqlglot leaves as raw commands.
COMMAND_VERBS = frozenset({"FETCH", "MOVE", "SHOW", "RESET"})
_WRITES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.TruncateTable,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Copy,
    exp.Command,
)
_READS = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
_CURSOR = re.compile(r"^(?P<opts>.*?)\bFOR\b\s+(?P<query>.*)$", re.IGNORECASE | re.DOTALL)
_EXPLAIN_OPTIONS = re.compile(r"^\s*(?:\([^)]*\)|VERBOSE\b|COSTS\b)\s*", re.IGNORECASE)
_ANALYZE = re.compile(r"\banaly[sz]e\b", re.IGNORECASE)
_STRING = re.compile(r"'(?:[^']|'')*'")


class Refused(Exception):
    """The statement is not allowed for the read-only login; ``str()`` says why."""


class Resolver(Protocol):
    """What the engine knows about one session, asked by `ReadOnlyPolicy`."""

    def parse(self, sql: str) -> list[exp.Expression]:
        """Parse ``sql`` exactly as the engine will."""
        ...

    def resolve(self, stmt: exp.Expression) -> exp.Expression:
        """A copy of ``stmt`` whose relations carry the schema the engine resolves them to."""
        ...

    def is_own_temp(self, schema: str, name: str) -> bool:
        """Whether ``schema.name`` is a temporary table the engine created for this session."""
        ...

    def taken(self, name: str) -> bool:
        """Whether a non-temporary relation or a collection is named ``name``."""
        ...


class SqlglotResolver:
    """A resolver without an engine: sqlglot's parse, no temporary table, no name taken."""

    def parse(self, sql: str) -> list[exp.Expression]:
        """Parse with sqlglot's PostgreSQL dialect."""
        return [s for s in sqlglot.parse(sql, read="postgres") if s is not None]

    def resolve(self, stmt: exp.Expression) -> exp.Expression:
        """``stmt`` unchanged."""
        return stmt

    def is_own_temp(self, schema: str, name: str) -> bool:
        """Never."""
        return False

    def taken(self, name: str) -> bool:
        """Never."""
        return False


@dataclass
class ReadOnlyPolicy:
    """The rules for the read-only login.

    Args:
        readable: The relations of the public schema the login may read (lower case).
        user: The login's name, for messages.
    """

    readable: frozenset[str]
    user: str = "tableau"

    def check_sql(self, sql: str, resolver: Resolver | None = None) -> None:
        """Parse ``sql`` (one or several statements) and `check_all` of them."""
        resolver = resolver or SqlglotResolver()
        try:
            statements = resolver.parse(sql)
        except sqlglot.errors.SqlglotError as exc:
            raise self.refused(f"a statement the check cannot parse: {exc}") from None
        self.check_all(statements, resolver)

    def check_all(self, statements: Iterable[exp.Expression], resolver: Resolver) -> None:
        """`check` statements meant to run in order (one simple query message).

        A temporary table created by an earlier statement of the same message counts as the
        session's for the later ones; the launcher checks each again, against the engine,
        right before it runs.
        """
        pending: set[str] = set()
        for stmt in statements:
            self.check(stmt, resolver, pending=pending)

    def check(
        self, stmt: exp.Expression, resolver: Resolver, *, pending: set[str] | None = None
    ) -> None:
        """Return if the login may run ``stmt``, else raise `Refused` with the reason.

        Args:
            stmt: One parsed statement.
            resolver: The engine's view of the session.
            pending: Temporary tables created earlier in the same message (updated).
        """
        _Check(self, resolver, pending if pending is not None else set()).statement(stmt)

    def refused(self, what: str) -> Refused:
        """The `Refused` error for ``what``."""
        return Refused(f"permission denied: the login {self.user!r} is read-only ({what})")


@dataclass
class _Check:
    """One statement's check."""

    policy: ReadOnlyPolicy
    resolver: Resolver
    pending: set[str]

    def statement(self, stmt: exp.Expression) -> None:
        if isinstance(stmt, (exp.Transaction, exp.Commit, exp.Rollback, exp.Show)):
            return
        if isinstance(stmt, exp.Set):
            self._setting(stmt.sql(dialect="postgres"))
        elif isinstance(stmt, exp.Alias) and isinstance(stmt.this, exp.Column):
            if stmt.this.name.lower() not in ALIAS_VERBS:
                raise self.policy.refused(f"{stmt.this.name.upper()} statements")
        elif isinstance(stmt, exp.Command):
            self._command(stmt)
        elif isinstance(stmt, _READS):
            self._read(self.resolver.resolve(stmt))
        elif isinstance(stmt, exp.Create):
            self._create_temp(self.resolver.resolve(stmt))
        elif isinstance(stmt, (exp.Insert, exp.Update, exp.Delete, exp.TruncateTable, exp.Drop)):
            self._temp_write(self.resolver.resolve(stmt))
        else:
            raise self.policy.refused(f"{type(stmt).__name__.upper()} statements")

    def _setting(self, text: str) -> None:
        words = set(re.findall(r"[a-z_]+", _STRING.sub("", text).lower()))
        if words & DENIED_SETTING_WORDS:
            raise self.policy.refused(f"setting {', '.join(sorted(words & DENIED_SETTING_WORDS))}")

    def _command(self, stmt: exp.Command) -> None:
        verb = str(stmt.this).upper()
        arg = stmt.expression
        tail = str(arg.name if isinstance(arg, exp.Literal) else (arg or "")).strip()
        if verb in COMMAND_VERBS:
            return
        if verb == "SET":
            self._setting(f"SET {tail}")
            return
        if verb == "DECLARE" and (cursor := _CURSOR.match(tail)):
            if not re.search(r"\bCURSOR\b", cursor.group("opts"), re.IGNORECASE):
                raise self.policy.refused("a DECLARE that is not a cursor")
            self._inner_read(cursor.group("query"))
            return
        if verb == "EXPLAIN":
            if _ANALYZE.search(tail):
                raise self.policy.refused("EXPLAIN ANALYZE runs the statement")
            while (option := _EXPLAIN_OPTIONS.match(tail)) and option.end():
                tail = tail[option.end() :]
            self._inner_read(tail)
            return
        raise self.policy.refused(f"{verb} statements")

    def _inner_read(self, sql: str) -> None:
        try:
            statements = self.resolver.parse(sql)
        except Exception as exc:  # any parser's error: refused, fail closed
            raise self.policy.refused(f"a query the check cannot parse: {exc}") from None
        if len(statements) != 1 or not isinstance(statements[0], _READS):
            raise self.policy.refused("a cursor or EXPLAIN over something else than a query")
        self._read(self.resolver.resolve(statements[0]))

    def _read(self, stmt: exp.Expression, *, targets: tuple[exp.Table, ...] = ()) -> None:
        """Check everything ``stmt`` reads (all its relations but its ``targets``)."""
        nested = [node for node in stmt.find_all(*_WRITES) if node is not stmt]
        if nested:
            raise self.policy.refused(f"a nested {nested[0].key.upper()}")
        if stmt.find(exp.Into) is not None:
            raise self.policy.refused("SELECT ... INTO creates a table")
        if stmt.find(exp.Lock) is not None:
            raise self.policy.refused("row locks")
        self._functions(stmt)
        ctes = {_ident(cte.args.get("alias")) for cte in stmt.find_all(exp.CTE)}
        for name in ctes:
            if self.resolver.taken(name):
                raise self.policy.refused(f"a WITH query named like the relation {name}")
        for table in stmt.find_all(exp.Table):
            if not any(table is target for target in targets):
                self._readable(table, ctes)

    def _functions(self, stmt: exp.Expression) -> None:
        for function in stmt.find_all(exp.Func):
            names = {function.name.lower(), function.sql_name().lower(), function.key.lower()}
            for name in names:
                if name in DENIED_FUNCTIONS or name.startswith(DENIED_FUNCTION_PREFIXES):
                    raise self.policy.refused(f"function {name}()")

    def _readable(self, table: exp.Table, ctes: set[str]) -> None:
        name, schema = _ident(table.this), _ident(table.args.get("db"))
        if not name or isinstance(table.this, exp.Func):
            return  # a set-returning function such as generate_series(...)
        if table.catalog:
            raise self.policy.refused(f"relation {table.sql(dialect='postgres')} elsewhere")
        if schema in CATALOG_SCHEMAS or (not schema and name.startswith("pg_")):
            return
        if schema in ("", "public") and name in self.policy.readable:
            return
        if not schema and name in ctes | self.pending:
            return
        if schema and self.resolver.is_own_temp(schema, name):
            return
        raise self.policy.refused(f"relation {table.sql(dialect='postgres')} is not readable")

    def _create_temp(self, stmt: exp.Create) -> None:
        kind = str(stmt.args.get("kind") or "").upper()
        if kind != "TABLE" or stmt.find(exp.TemporaryProperty) is None:
            raise self.policy.refused(f"CREATE {kind or 'statements'} (only TEMP TABLE)")
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        if not isinstance(target, exp.Table):
            raise self.policy.refused("a CREATE TEMP TABLE without a name")
        name, schema = _ident(target.this), _ident(target.args.get("db"))
        if schema and not schema.startswith("pg_temp"):
            raise self.policy.refused(f"a temporary table in schema {schema}")
        if name in self.policy.readable or self.resolver.taken(name):
            raise self.policy.refused(f"a temporary table named like the relation {name}")
        self._read(stmt, targets=(target,))
        self.pending.add(name)

    def _temp_write(self, stmt: exp.Expression) -> None:
        if isinstance(stmt, exp.Drop):
            kind = str(stmt.args.get("kind") or "").upper()
            if kind != "TABLE":
                raise self.policy.refused(f"DROP {kind}")
            targets = list(stmt.args.get("tables") or [stmt.this])
        elif isinstance(stmt, exp.TruncateTable):
            targets = list(stmt.expressions)
        else:
            node = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
            targets = [node]
        verb = stmt.key.upper()
        for target in targets:
            if not isinstance(target, exp.Table) or not self._own_temp(target):
                shown = target.sql(dialect="postgres") if target else "this relation"
                raise self.policy.refused(f"{verb} on {shown}, not a temporary table of yours")
        self._read(stmt, targets=tuple(targets))
        if isinstance(stmt, exp.Drop):
            self.pending.difference_update(_ident(t.this) for t in targets)

    def _own_temp(self, table: exp.Table) -> bool:
        name, schema = _ident(table.this), _ident(table.args.get("db"))
        if table.catalog or not name:
            return False
        if not schema:
            return name in self.pending
        return schema not in ("public", "pg_temp") and self.resolver.is_own_temp(schema, name)


def _ident(node: exp.Expression | None) -> str:
    """A name as PostgreSQL folds it: unquoted → lower case, quoted → as written."""
    if isinstance(node, exp.TableAlias):
        node = node.this
    if isinstance(node, exp.Identifier):
        return node.this if node.quoted else node.this.lower()
    return node.name.lower() if isinstance(node, exp.Expression) else ""
