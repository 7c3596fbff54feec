"""The read-only policy of the BI login, statement by statement (pure sqlglot, no server)."""

import pytest

from sales_stream.sql.readonly import ReadOnlyPolicy, Refused

READABLE = frozenset({"sales", "ventes", "ventes_par_heure", "ventes_par_jour"})

ALLOWED = [
    "SELECT * FROM ventes",
    'SELECT * FROM (SELECT * FROM ventes) "Custom SQL Query" WHERE "Custom SQL Query".ts > now()',
    'SELECT product FROM "public"."ventes_par_jour" "ventes_par_jour" GROUP BY 1',
    "WITH a AS (SELECT * FROM sales) SELECT count(*) FROM a",
    "SELECT region FROM ventes_par_heure UNION SELECT region FROM ventes_par_jour",
    "SELECT n.nspname FROM pg_catalog.pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid",
    "SELECT table_name FROM information_schema.tables",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT version()",
    "SET extra_float_digits = 3",
    "SHOW TimeZone",
    "BEGIN",
    "COMMIT",
    "DISCARD ALL",
    'DECLARE "c" CURSOR WITH HOLD FOR SELECT * FROM sales',
    'FETCH 100 IN "c"',
    'CLOSE "c"',
    "EXPLAIN SELECT * FROM sales",
]
REFUSED = [
    "INSERT INTO sales VALUES (1)",
    "UPDATE ventes_par_jour SET amount = 0",
    "DELETE FROM ventes",
    "TRUNCATE sales",
    "MERGE INTO sales USING ventes ON true WHEN MATCHED THEN DELETE",
    "COPY sales FROM STDIN",
    "CREATE TABLE x (a int)",
    "CREATE OR REPLACE VIEW ventes AS SELECT 1",
    "DROP TABLE sales",
    "ALTER TABLE sales ADD COLUMN x int",
    "GRANT ALL ON sales TO public",
    "SELECT * FROM dead_letters",
    "SELECT * FROM public.dead_letters",
    "SELECT * FROM other_db.public.sales",
    "SELECT * INTO copy_of_sales FROM sales",
    "WITH d AS (DELETE FROM sales RETURNING *) SELECT * FROM d",
    "SELECT lo_unlink(1)",
    "SELECT nextval('s')",
    "SELECT pg_terminate_backend(1)",
    "SELECT 1; DELETE FROM sales",
    "DECLARE c CURSOR FOR SELECT * FROM dead_letters",
    "EXPLAIN ANALYZE DELETE FROM sales",
    "PREPARE p AS DELETE FROM sales",
    "DO $$ BEGIN DELETE FROM sales; END $$",
    "VACUUM sales",
    "CALL f()",
    "CREATE TEMP TABLE sales (a int)",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_reads_are_allowed(sql: str) -> None:
    ReadOnlyPolicy(READABLE).check_sql(sql)


@pytest.mark.parametrize("sql", REFUSED)
def test_writes_and_hidden_relations_are_refused(sql: str) -> None:
    with pytest.raises(Refused, match="permission denied: the login 'tableau' is read-only"):
        ReadOnlyPolicy(READABLE).check_sql(sql)


def test_a_temporary_table_counts_from_its_creation_in_the_same_message() -> None:
    policy = ReadOnlyPolicy(READABLE)
    create = 'CREATE TEMPORARY TABLE "#Tableau_1_Filter" ("X" TEXT)'
    policy.check_sql(
        f"{create}; INSERT INTO \"#Tableau_1_Filter\" VALUES ('Bretagne'); "
        'SELECT * FROM ventes WHERE region IN (SELECT "X" FROM "#Tableau_1_Filter")'
    )
    for then in (
        'INSERT INTO "#Tableau_1_Filter" SELECT raw FROM dead_letters',
        "INSERT INTO public.\"#Tableau_1_Filter\" VALUES ('x')",
        'DROP TABLE "#Tableau_1_Filter"; DELETE FROM "#Tableau_1_Filter"',
    ):
        with pytest.raises(Refused):
            policy.check_sql(f"{create}; {then}")
    with pytest.raises(Refused):  # without an engine, no earlier message made it
        policy.check_sql("INSERT INTO \"#Tableau_1_Filter\" VALUES ('x')")
