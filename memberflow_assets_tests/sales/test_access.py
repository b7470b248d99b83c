"""The access strategy against real PostgreSQL: one login user per team, every allowed statement
succeeds and every forbidden one fails with SQLSTATE 42501 (insufficient_privilege)."""

import os
import subprocess
import sys
import uuid

import psycopg2
import psycopg2.errors
import pytest

from memberflow_assets import cli
from memberflow_assets.sales import access
from memberflow_assets.settings import REPO_ROOT
from memberflow_assets_tests.sales_data import PASSWORD, login

DENIED = "42501"


@pytest.fixture(scope="module")
def team_connections(sales_dsn):
    """A login user per team, created the documented way, and a connection as each."""
    suffix = uuid.uuid4().hex[:6]
    users = {team: f"{team}_user_{suffix}" for team in access.TEAMS}
    with psycopg2.connect(sales_dsn) as platform:
        for team, user in users.items():
            access.create_user(platform, team, user, PASSWORD)
    connections = {team: login(sales_dsn, user) for team, user in users.items()}
    # The matrix proves the privileges alone refuse writes; analytics' read-only default is tested apart.
    with connections["analytics"].cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = off")
    connections["analytics"].commit()
    yield connections
    for connection in connections.values():
        connection.close()
    for user in users.values():
        access.remove_user(sales_dsn, user)


def outcome(connection, statement: str) -> str:
    """'ok' or the SQLSTATE of the error; always rolled back."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            if cursor.description:
                cursor.fetchall()
        return "ok"
    except psycopg2.Error as error:
        return error.pgcode
    finally:
        connection.rollback()


READS_ALLOWED = {
    "logistics": [
        "SELECT * FROM sales.member_transactions",
        "SELECT transaction_id, total_price, total_weight_kg, status, created_at, completed_at, updated_at "
        "FROM sales.transactions",
        "SELECT * FROM sales.transaction_lines",
        "SELECT item_id, name, weight_kg FROM sales.items",
        "SELECT t.transaction_id, sum(l.line_weight_kg) FROM sales.transactions t "
        "JOIN sales.transaction_lines l USING (transaction_id) GROUP BY 1",
    ],
    "analytics": [
        "SELECT * FROM sales.member_transactions",
        "SELECT count(*), sum(total_price) FROM sales.transactions",
        "SELECT * FROM sales.transaction_lines",
        "SELECT * FROM sales.items",
        "SELECT * FROM sales.manufacturers",
        "SELECT * FROM sales.member_profiles",
        "SELECT p.birth_year, count(*), sum(t.total_price) FROM sales.member_profiles p "
        "JOIN sales.member_transactions t USING (member_key) GROUP BY 1",
    ],
    "sales": ["SELECT * FROM sales.items", "SELECT * FROM sales.manufacturers"],
}

WRITES_ALLOWED = {
    "logistics": [
        "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1",
        "UPDATE sales.transactions SET status = 'completed', completed_at = clock_timestamp() WHERE status = 'pending'",
    ],
    "analytics": [],
    "sales": [
        "INSERT INTO sales.manufacturers (name) VALUES ('Globex')",
        "UPDATE sales.manufacturers SET name = 'Acme Corp' WHERE name = 'Acme'",
        "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg) VALUES ('Toaster', 1, 24.90, 2.1) "
        "RETURNING item_id",
        "UPDATE sales.items SET cost = 17.99, weight_kg = 1.1 WHERE item_id = 1",
        "UPDATE sales.items SET discontinued_at = now() WHERE item_id = 1",
        "DELETE FROM sales.items WHERE item_id = 2",
        "DELETE FROM sales.manufacturers WHERE name = 'Unused Co'",
    ],
}

# Every team: no DDL, no TRUNCATE, nothing outside the sales grants, nothing in public or internal tables.
DENIED_TO_EVERY_TEAM = [
    "SELECT * FROM sales.members",
    "SELECT * FROM sales.transactions",  # membership_id: its suffix hashes the birthday
    "SELECT membership_id FROM sales.transactions",
    "SELECT count(*) FROM sales.transactions WHERE membership_id LIKE 'lee%'",
    "SELECT email, mobile_no FROM sales.members",
    "UPDATE sales.members SET email = 'x@example.com'",
    "DELETE FROM sales.members",
    "TRUNCATE sales.transactions",
    "TRUNCATE sales.transaction_lines",
    "TRUNCATE sales.items",
    "CREATE TABLE sales.notes (id int)",
    "CREATE TABLE public.notes (id int)",
    "CREATE TEMP TABLE notes (id int)",
    "CREATE SCHEMA scratch",
    "CREATE VIEW sales.everything AS SELECT 1 AS one",
    "ALTER TABLE sales.transactions ADD COLUMN note text",
    "ALTER TABLE sales.items DROP CONSTRAINT items_cost_check",
    "DROP TABLE sales.transaction_lines",
    "DROP VIEW sales.member_profiles",
    "CREATE INDEX ON sales.items (name)",
    "GRANT SELECT ON sales.members TO PUBLIC",
    "SELECT * FROM public.schema_migrations",
    "SELECT * FROM sales.totals_to_verify",
    "INSERT INTO sales.totals_check_queued DEFAULT VALUES",
    "INSERT INTO sales.transactions (membership_id, total_price, total_weight_kg) VALUES ('lee_1a2b3', 1, 1)",
    "DELETE FROM sales.transactions",
    "DELETE FROM sales.transaction_lines",
    "UPDATE sales.transaction_lines SET quantity = 9",
    # nothing to create: large objects (PUBLIC's by default), temporary objects, extensions, ...
    "SELECT lo_create(0)",
    "SELECT lo_creat(-1)",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT lo_import('/etc/hostname')",
    "CREATE TEMP VIEW scratch AS SELECT 1 AS one",
    "CREATE SEQUENCE pg_temp.scratch",
    "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE EXTENSION vector SCHEMA sales",
    "CREATE PUBLICATION scratch",
    # no lock the platform waits for: the migrations' table, the sales demo's and image hours' advisory locks
    "LOCK TABLE public.schema_migrations IN ACCESS SHARE MODE",
    "SELECT pg_advisory_lock(hashtext('memberflow_migrations'))",
    "SELECT pg_advisory_xact_lock(hashtext('memberflow_sales_demo'))",
    "SELECT pg_try_advisory_lock(1)",
]

DENIED_PER_TEAM = {
    "logistics": [
        "UPDATE sales.transactions SET total_price = 0",
        "UPDATE sales.transactions SET total_weight_kg = 99",
        "UPDATE sales.transactions SET membership_id = 'lee_1a2b3'",
        "UPDATE sales.transactions SET created_at = now()",
        "UPDATE sales.transactions SET status = 'completed', total_price = 0 WHERE transaction_id = 1",
        "UPDATE sales.items SET weight_kg = 1",
        "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg) VALUES ('x', 1, 1, 1)",
        "DELETE FROM sales.items",
        "SELECT * FROM sales.manufacturers",
        "SELECT * FROM sales.member_profiles",
        "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1 RETURNING membership_id",
        "INSERT INTO sales.transaction_lines (transaction_id, line_number, item_id, quantity, unit_price, "
        "unit_weight_kg) VALUES (1, 9, 1, 1, 1, 1)",
    ],
    "analytics": [
        "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1",
        "UPDATE sales.items SET cost = 1",
        "INSERT INTO sales.manufacturers (name) VALUES ('Globex')",
        "DELETE FROM sales.items WHERE item_id = 2",
        "DELETE FROM sales.manufacturers",
        "TRUNCATE sales.manufacturers",
        "CREATE MATERIALIZED VIEW sales.spend AS SELECT 1 AS one",
        "SELECT sales.verify_totals()",
    ],
    "sales": [
        "SELECT * FROM sales.member_transactions",
        "SELECT * FROM sales.transaction_lines",
        "SELECT * FROM sales.member_profiles",
        "UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1",
        "UPDATE sales.items SET item_id = 99 WHERE item_id = 2",
        "UPDATE sales.items SET created_at = now()",
        "INSERT INTO sales.items (item_id, name, manufacturer_id, cost, weight_kg) VALUES (99, 'x', 1, 1, 1)",
        "UPDATE sales.manufacturers SET manufacturer_id = 99",
    ],
}


def matrix():
    for team in access.TEAMS:
        for statement in READS_ALLOWED[team] + WRITES_ALLOWED[team]:
            yield pytest.param(team, statement, "ok", id=f"{team}-allowed-{statement[:60]}")
        for statement in DENIED_TO_EVERY_TEAM + DENIED_PER_TEAM[team]:
            yield pytest.param(team, statement, DENIED, id=f"{team}-denied-{statement[:60]}")


@pytest.mark.parametrize(("team", "statement", "expected"), list(matrix()))
def test_access_matrix(team_connections, team, statement, expected):
    assert outcome(team_connections[team], statement) == expected


def test_logistics_can_only_move_a_transaction_forward(team_connections):
    logistics = team_connections["logistics"]
    assert outcome(logistics, "UPDATE sales.transactions SET status = 'pending', completed_at = NULL "
                              "WHERE transaction_id = 2") == "23514"  # fmt: skip
    assert outcome(logistics, "UPDATE sales.transactions SET completed_at = now() WHERE transaction_id = 2") == "23514"


def test_sales_cannot_remove_an_item_that_was_sold(team_connections):
    assert outcome(team_connections["sales"], "DELETE FROM sales.items WHERE item_id = 1") == "23503"


def test_analytics_sessions_are_read_only_by_default(sales_dsn):
    user = f"analyst_{uuid.uuid4().hex[:6]}"
    with psycopg2.connect(sales_dsn) as platform:
        access.create_user(platform, "analytics", user, PASSWORD)
    connection = login(sales_dsn, user)
    try:
        assert outcome(connection, "SHOW default_transaction_read_only") == "ok"
        with connection.cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone() == ("on",)
        connection.rollback()
        assert outcome(connection, "SELECT count(*) FROM sales.transactions") == "ok"
        assert outcome(connection, "UPDATE sales.items SET cost = 1") == "25006"  # read-only transaction
    finally:
        connection.close()
        access.remove_user(sales_dsn, user)


def test_public_gets_nothing_and_the_platform_owns_everything(sales_dsn):
    with psycopg2.connect(sales_dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT kind, name FROM (
                SELECT 'database' AS kind, datname::text AS name, datacl AS acl FROM pg_database
                WHERE datname = current_database()
                UNION ALL SELECT 'schema', nspname::text, nspacl FROM pg_namespace WHERE nspname IN ('sales', 'public')
                UNION ALL SELECT 'relation', c.oid::regclass::text, c.relacl FROM pg_class c
                    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('sales', 'public')
                UNION ALL SELECT 'function', p.oid::regprocedure::text, p.proacl FROM pg_proc p
                    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'sales'
            ) objects
            WHERE acl IS NULL AND kind IN ('database', 'schema', 'function')  -- NULL = PostgreSQL's defaults
               OR EXISTS (SELECT FROM aclexplode(acl) a WHERE a.grantee = 0)  -- 0 = PUBLIC
            """
        )
        assert cursor.fetchall() == []
        cursor.execute(
            "SELECT DISTINCT r.rolname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_roles r ON r.oid = c.relowner WHERE n.nspname = 'sales' "
            "UNION SELECT r.rolname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE nspname = 'sales'"
        )
        owners = cursor.fetchall()
        cursor.execute("SELECT current_user")
        assert owners == [cursor.fetchone()]
        cursor.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (list(access.TEAMS),)
        )
        assert cursor.fetchall() == [("analytics", False), ("logistics", False), ("sales", False)]
    connection.close()


def test_team_users_are_checked_and_passwords_stored_as_scram(sales_dsn):
    user = f"alice_{uuid.uuid4().hex[:6]}"
    connection = psycopg2.connect(sales_dsn)
    try:
        for team, name, password, problem in (
            ("marketing", user, PASSWORD, "unknown team"),
            ("sales", "Robert'); DROP TABLE x;--", PASSWORD, "invalid user name"),
            ("sales", "sales", PASSWORD, "invalid user name"),
            ("sales", user, "short", "at least 12"),
        ):
            with pytest.raises(access.AccessError, match=problem):
                access.create_user(connection, team, name, password)
        access.create_user(connection, "sales", user, PASSWORD)
        connection.commit()
        with pytest.raises(access.AccessError, match="exists already"):
            access.create_user(connection, "logistics", user, PASSWORD)
        connection.rollback()
        with pytest.raises(access.AccessError, match="not a user of any team"):
            access.set_password(connection, "postgres", PASSWORD)
        with pytest.raises(access.AccessError, match="not a user of any team"):
            access.remove_user(sales_dsn, "analytics")
        connection.rollback()
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
            verifier = cursor.fetchone()[0]
        assert verifier.startswith("SCRAM-SHA-256$") and PASSWORD not in verifier
        access.set_password(connection, user, "another long passphrase")
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (user,))
            rotated = cursor.fetchone()[0]
        assert rotated.startswith("SCRAM-SHA-256$") and rotated != verifier
        assert (user, "sales", True) in [(u.name, u.team, u.can_login) for u in access.list_users(connection)]
        connection.commit()
    finally:
        connection.close()
        access.remove_user(sales_dsn, user)


def test_the_password_really_is_checked_and_rotation_replaces_it(sales_dsn):
    user = f"scram_{uuid.uuid4().hex[:6]}"
    platform = psycopg2.connect(sales_dsn)
    try:
        access.create_user(platform, "logistics", user, PASSWORD)
        platform.commit()
        psycopg2.connect(sales_dsn, user=user, password=PASSWORD).close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(sales_dsn, user=user, password="wrong password!!")
        access.set_password(platform, user, "the new passphrase 2")
        platform.commit()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(sales_dsn, user=user, password=PASSWORD)
        psycopg2.connect(sales_dsn, user=user, password="the new passphrase 2").close()
    finally:
        platform.close()
        access.remove_user(sales_dsn, user)


def test_the_access_commands(memberflow_env, monkeypatch, capsys):
    user = f"bob_{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("MEMBERFLOW_USER_PASSWORD", PASSWORD)
    assert cli.main(["access", "create-user", user, "--team", "logistics"]) == 0
    assert cli.main(["access", "create-user", user, "--team", "sales"]) == 2  # exists already
    assert cli.main(["access", "list"]) == 0
    assert f"logistics  {user}" in capsys.readouterr().out
    monkeypatch.setenv("MEMBERFLOW_USER_PASSWORD", "a rotated passphrase")
    assert cli.main(["access", "set-password", user]) == 0
    assert cli.main(["access", "audit"]) == 0
    assert f"{user} had set their own password" not in capsys.readouterr().out  # given by the tool
    assert cli.main(["access", "remove-user", user]) == 0
    assert cli.main(["access", "remove-user", user]) == 2
    assert "not a user of any team" in capsys.readouterr().err


def test_without_a_password_in_the_environment_the_command_needs_a_terminal(memberflow_env):
    result = subprocess.run(
        [sys.executable, "-m", "memberflow_assets.cli", "access", "create-user", "carol_abc", "--team", "sales"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={name: value for name, value in os.environ.items() if name != "MEMBERFLOW_USER_PASSWORD"},
    )
    assert result.returncode == 2, result.stderr
    assert "set MEMBERFLOW_USER_PASSWORD or run the command in a terminal" in result.stderr
