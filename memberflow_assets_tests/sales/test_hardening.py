"""Attacks on the sales database by its own team users, against real PostgreSQL with team logins:
each test reproduces one way a team user could stop the platform, create something, see what is
hidden from them or outlive their offboarding, and shows that it no longer works."""

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from urllib.parse import urlsplit

import psycopg2
import psycopg2.errors
import pytest
from dagster import build_sensor_context
from psycopg2.extensions import connection as PgConnection

from memberflow_assets import cli, postgres
from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales import access
from memberflow_assets.sales.sensors import team_password_audit_sensor
from memberflow_assets.settings import Settings
from memberflow_assets_tests.sales_data import (
    MEMBER,
    PASSWORD,
    add_item,
    add_members,
    add_transaction,
    login,
    migrated,
    role_exists,
    team_user,
)


def run(dsn: str, statement: str, *params) -> list[tuple]:
    """Run one statement as the platform's role (committed); its rows, if any."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(statement, params or None)
        rows = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows


def give_large_object(dsn: str, owner: str, content: bytes = b"evidence") -> int:
    """A large object owned by `owner`, as one created before the server refused that to teams."""
    oid = run(dsn, "SELECT lo_from_bytea(0, %s)", content)[0][0]
    run(dsn, f'ALTER LARGE OBJECT {oid} OWNER TO "{owner}"')
    return oid


@contextmanager
def read_write_session(dsn: str, team: str) -> Iterator[PgConnection]:
    """A session of a new user of `team` with analytics' read-only seatbelt off: the privileges alone
    must refuse what follows."""
    with team_user(dsn, team) as user:
        session = login(dsn, user)
        try:
            with session.cursor() as cursor:
                cursor.execute("SET default_transaction_read_only = off")
            session.commit()
            yield session
        finally:
            session.close()


@pytest.fixture(scope="module")
def sessions(sales_dsn) -> Iterator[dict[str, PgConnection]]:
    """One read-write session per team for the module; each test rolls back what it did."""
    with ExitStack() as stack:
        yield {team: stack.enter_context(read_write_session(sales_dsn, team)) for team in access.TEAMS}


LARGE_OBJECT_OWNER = "SELECT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata WHERE oid = %s"


# -- offboarding ----------------------------------------------------------------------------------
def test_offboarding_hands_over_what_the_user_owns_in_any_database_and_drops_the_role(sales_dsn, make_database):
    other_dsn = make_database()
    with team_user(sales_dsn, "logistics") as user:
        session = login(sales_dsn, user)
        with session.cursor() as cursor:  # possible for any role: default privileges for its own objects
            cursor.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
        session.commit()
        here, elsewhere = give_large_object(sales_dsn, user), give_large_object(other_dsn, user)

        removal = access.remove_user(sales_dsn, user)

        assert removal == access.Removal(sessions_ended=1, objects_reassigned=3)
        assert not role_exists(sales_dsn, user)
        with pytest.raises(psycopg2.OperationalError):  # the open session was ended
            session.cursor().execute("SELECT 1")
        # Nothing the user made is lost: it belongs to the platform's role now.
        platform = run(sales_dsn, "SELECT current_user::text")
        assert run(sales_dsn, LARGE_OBJECT_OWNER, here) == run(other_dsn, LARGE_OBJECT_OWNER, elsewhere) == platform
        assert bytes(run(sales_dsn, "SELECT lo_get(%s)", here)[0][0]) == b"evidence"
        # The user's default privileges went with the role (the platform's own REVOKE on functions stays).
        assert run(sales_dsn, "SELECT pg_get_userbyid(defaclrole)::text, defaclobjtype::text FROM pg_default_acl") == [
            (platform[0][0], "f")
        ]


def test_offboarding_that_cannot_finish_leaves_no_login_and_says_why(memberflow_env, pg_dsn, make_database, capsys):
    migrated(pg_dsn)
    locked_dsn = make_database()
    with team_user(pg_dsn, "analytics") as user:
        give_large_object(locked_dsn, user)
        locked = urlsplit(locked_dsn).path.lstrip("/")
        run(pg_dsn, f'ALTER DATABASE "{locked}" ALLOW_CONNECTIONS false')  # the platform cannot get in there

        assert cli.main(["access", "remove-user", user]) == 2
        error = capsys.readouterr().err
        assert f"{user!r} can no longer log in, but removing the role failed" in error
        assert "Traceback" not in error
        assert role_exists(pg_dsn, user) and not can_log_in(pg_dsn, user)
        with pytest.raises(psycopg2.OperationalError, match="not permitted to log in"):
            login(pg_dsn, user)

        run(pg_dsn, f'ALTER DATABASE "{locked}" ALLOW_CONNECTIONS true')
        assert cli.main(["access", "remove-user", user]) == 0  # run again once the cause is fixed
        assert "1 object(s) they owned" in capsys.readouterr().out
        assert not role_exists(pg_dsn, user)


def can_log_in(dsn: str, user: str) -> bool:
    return run(dsn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", user) == [(True,)]


# -- migrations cannot be stalled -------------------------------------------------------------------
@pytest.fixture
def pending_migration(pg_dsn, tmp_path, monkeypatch):
    """A database with the real migrations applied and one more pending, 0999, which needs an
    exclusive lock on sales.members (as an ALTER TABLE does); short lock waits. Returns the DSN."""
    migrated(pg_dsn)
    for path in postgres.migration_files():
        (tmp_path / path.name).symlink_to(path)
    (tmp_path / "0999_members_note.sql").write_text("ALTER TABLE sales.members ADD COLUMN note text;")
    monkeypatch.setattr(postgres, "MIGRATIONS_DIR", tmp_path)
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(postgres, "MIGRATION_LOCK_WAIT_SECONDS", 0.5)
    return pg_dsn


def test_an_analyst_holding_a_lock_makes_a_migration_fail_soon_naming_them(pending_migration):
    pg_dsn = pending_migration
    with team_user(pg_dsn, "analytics", prefix="idle_analyst") as user:
        analyst = login(pg_dsn, user)
        try:
            with analyst.cursor() as cursor:  # an open transaction that read members, left idle
                cursor.execute("SELECT count(*) FROM sales.member_profiles")
            started = time.monotonic()
            with pytest.raises(postgres.MigrationError) as failure:
                postgres.apply_migrations(pg_dsn)
            assert time.monotonic() - started < 10
            message = str(failure.value)
            assert "migration 0999_members_note.sql waited 0.5 s for a lock and gave up" in message
            assert f"user {user} (idle in transaction" in message and "sales.members" in message
        finally:
            analyst.close()
        assert postgres.apply_migrations(pg_dsn) == ["0999_members_note.sql"]  # the analyst has gone


def test_migrations_up_to_date_take_no_lock_and_a_concurrent_migrator_is_waited_for_boundedly(
    memberflow_env,
    pending_migration,
    capsys,  # in this order: the deployment is migrated before 0999 exists
):
    pg_dsn = pending_migration
    other_migrator = psycopg2.connect(pg_dsn)  # the platform's role, in the middle of a migration
    try:
        with other_migrator.cursor() as cursor:
            cursor.execute("LOCK TABLE public.schema_migrations IN EXCLUSIVE MODE")
        with pytest.raises(postgres.MigrationError, match="the migration lock waited 0.5 s"):
            postgres.apply_migrations(pg_dsn)
        assert cli.main(["migrate"]) == 1
        error = capsys.readouterr().err
        assert "memberflow migrate: the migration lock waited 0.5 s" in error and "Traceback" not in error
        other_migrator.rollback()  # that migrator has finished 0999 meanwhile; the next one starts
        run(pg_dsn, "INSERT INTO public.schema_migrations VALUES ('0999', '0999_members_note.sql')")
        with other_migrator.cursor() as cursor:
            cursor.execute("LOCK TABLE public.schema_migrations IN EXCLUSIVE MODE")
        assert postgres.apply_migrations(pg_dsn) == []  # up to date: reads only, while the lock is held
    finally:
        other_migrator.close()


def test_processes_starting_together_apply_each_migration_once(pg_dsn):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(postgres.apply_migrations, [pg_dsn] * 4))
    applied = sorted(name for names in results for name in names)
    assert applied == sorted(path.name for path in postgres.migration_files())


# -- nothing to create, nowhere else to go ----------------------------------------------------------
@pytest.fixture
def outsider(sales_dsn):
    """A login role in no team (another application's, or a team user's leftover), with a password."""
    name = f"outsider_{uuid.uuid4().hex[:6]}"
    run(sales_dsn, f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
    yield name
    run(sales_dsn, f"DROP ROLE {name}")


def test_the_other_databases_of_the_embedded_server_refuse_team_and_teamless_logins(sales_dsn, make_database, outsider):
    dagster_like = urlsplit(make_database()).path.lstrip("/")  # created the way the dagster database is
    with team_user(sales_dsn, "analytics") as analyst:
        for user in (analyst, outsider):
            for database in ("postgres", "template1", dagster_like):
                with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
                    login(sales_dsn, user, database=database)
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            login(sales_dsn, outsider)  # the sales database only lets the teams in
        login(sales_dsn, analyst).close()


# -- authentication -------------------------------------------------------------------------------
def test_team_logins_need_their_password_on_the_embedded_server(sales_dsn):
    with team_user(sales_dsn, "logistics") as user:
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(sales_dsn, user=user)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(sales_dsn, user, password="not the password")
        login(sales_dsn, user).close()
    psycopg2.connect(sales_dsn).close()  # the platform's own role: trusted on the socket


# -- the birthday stays hidden ----------------------------------------------------------------------
@pytest.mark.parametrize("team", access.TEAMS)
def test_no_team_can_read_a_membership_id_anywhere(sales_dsn, sessions, team):
    """A membership_id's suffix hashes the birthday (366 tries with the birth year): every value a team
    can read, in any table, view or column it may select, is free of it; members are member_keys."""
    membership_ids = [row[0] for row in run(sales_dsn, "SELECT membership_id FROM sales.members")]
    session = sessions[team]
    with session.cursor() as cursor:
        cursor.execute(  # information_schema lists only the columns this user may read something of
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        readable = cursor.fetchall()
        assert readable, "the team reads nothing at all?"
        for schema, table, column in readable:
            cursor.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}"::text LIKE ANY(%s)',
                ([f"%{membership_id}%" for membership_id in membership_ids],),
            )
            assert cursor.fetchone() == (0,), (schema, table, column)
        assert ("sales", "transactions", "membership_id") not in readable
    session.rollback()


def test_an_error_message_does_not_give_logistics_the_membership_id(sessions):
    session = sessions["logistics"]
    with pytest.raises(psycopg2.errors.CheckViolation) as failure, session.cursor() as cursor:
        cursor.execute("UPDATE sales.transactions SET status = 'completed', completed_at = created_at - "
                       "interval '1 day' WHERE transaction_id = 1")  # fmt: skip
    session.rollback()
    # PostgreSQL shows the failing row with only the columns the user may read
    assert failure.value.diag.message_detail.startswith("Failing row contains (transaction_id, total_price")
    assert MEMBER not in str(failure.value)


# -- impossible times -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("completed_at", "expected"),
    [
        ("'infinity'", "23514"),
        ("'2999-01-01'", "23514"),
        ("now() + interval '1 hour'", "23514"),
        ("now() + interval '1 minute'", "ok"),  # a clock running a little fast
        ("now()", "ok"),
    ],
)
def test_logistics_cannot_complete_a_transaction_in_the_future(sessions, completed_at, expected):
    session = sessions["logistics"]
    try:
        session.cursor().execute(
            f"UPDATE sales.transactions SET status = 'completed', completed_at = {completed_at} "
            "WHERE transaction_id = 1"
        )
        result = "ok"
    except psycopg2.Error as error:
        result = error.pgcode
    finally:
        session.rollback()
    assert result == expected


def test_an_update_by_logistics_that_changes_nothing_does_not_mark_every_transaction_changed(sessions):
    """Reproduced: `UPDATE sales.transactions SET status = status` gave every transaction, completed ones too,
    a new updated_at, and the next incremental warehouse refresh re-extracted all of them."""
    session = sessions["logistics"]
    updated_at = "SELECT transaction_id, updated_at FROM sales.transactions ORDER BY 1"
    try:
        with session.cursor() as cursor:
            cursor.execute(updated_at)
            before = dict(cursor.fetchall())
            cursor.execute("UPDATE sales.transactions SET status = status, completed_at = completed_at")
            assert cursor.rowcount == len(before) == 2
            cursor.execute(updated_at)
            assert dict(cursor.fetchall()) == before
            cursor.execute("UPDATE sales.transactions SET status = 'completed' WHERE transaction_id = 1")
            cursor.execute(updated_at)
            after = dict(cursor.fetchall())
            assert after[1] > before[1] and after[2] == before[2]  # a completion still counts as a change
    finally:
        session.rollback()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE sales.items SET cost = 'NaN' WHERE item_id = 2",
        "UPDATE sales.items SET weight_kg = 'NaN' WHERE item_id = 2",
        "INSERT INTO sales.items (name, manufacturer_id, cost, weight_kg) VALUES ('Void', 1, 'NaN', 1)",
        "UPDATE sales.items SET name = repeat('x', 201) WHERE item_id = 2",
        "UPDATE sales.items SET name = E'Kettle\\nDROP' WHERE item_id = 2",
        "INSERT INTO sales.manufacturers (name) VALUES (E'Tab\\tCo')",
    ],
)
def test_the_sales_team_cannot_store_impossible_catalogue_values(sessions, statement):
    session = sessions["sales"]
    with pytest.raises(psycopg2.errors.CheckViolation):
        session.cursor().execute(statement)
    session.rollback()


def test_no_writer_can_create_a_transaction_in_the_future(sales_dsn):
    with pytest.raises(psycopg2.errors.CheckViolation, match="created_at_not_in_future"):
        run(sales_dsn, f"INSERT INTO sales.transactions (membership_id, total_price, total_weight_kg, created_at) "
                       f"VALUES ('{MEMBER}', 1, 1, 'infinity')")  # fmt: skip


@contextmanager
def migrated_before(pg_dsn: str, tmp_path, monkeypatch, first_missing: str) -> Iterator[None]:
    """The database migrated up to (not including) migration `first_missing` for the block, which can add
    the rows a later migration finds; afterwards apply_migrations applies the rest."""
    before = tmp_path / "before"
    before.mkdir()
    for path in postgres.migration_files():
        if path.name < first_missing:
            (before / path.name).symlink_to(path)
    real = postgres.MIGRATIONS_DIR
    monkeypatch.setattr(postgres, "MIGRATIONS_DIR", before)
    migrated(pg_dsn)
    yield
    monkeypatch.setattr(postgres, "MIGRATIONS_DIR", real)


def test_existing_rows_in_the_future_are_reported_and_new_ones_refused(pg_dsn, tmp_path, monkeypatch, caplog):
    with migrated_before(pg_dsn, tmp_path, monkeypatch, "0052"):
        add_members(pg_dsn, [MEMBER])
        with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
            transaction = add_transaction(cursor, MEMBER, [(add_item(cursor, "Kettle", "19.99", "1.200"), 1)])
            cursor.execute(
                "UPDATE sales.transactions SET status = 'completed', completed_at = 'infinity'"
                " WHERE transaction_id = %s",
                (transaction,),
            )
        connection.close()

    assert postgres.apply_migrations(pg_dsn)[0].startswith("0052_")

    assert f"sales.transactions holds rows that break completed_at_not_in_future: {transaction}" in caplog.text
    validated = run(
        pg_dsn,
        "SELECT conname::text, convalidated FROM pg_constraint WHERE conname LIKE %s ORDER BY 1",
        "%_not_in_future",
    )
    assert validated == [("completed_at_not_in_future", False), ("created_at_not_in_future", True)]
    with pytest.raises(psycopg2.errors.CheckViolation):
        run(pg_dsn, "UPDATE sales.transactions SET completed_at = '2999-01-01'")


def test_existing_times_the_warehouse_cannot_load_are_reported_and_new_ones_refused(
    pg_dsn, tmp_path, monkeypatch, caplog
):
    with migrated_before(pg_dsn, tmp_path, monkeypatch, "0065"):
        with psycopg2.connect(pg_dsn) as connection, connection.cursor() as cursor:
            add_item(cursor, "Kettle", "19.99", "1.200")
            old = add_item(cursor, "Amphora", "5.00", "2.000")
            cursor.execute("UPDATE sales.items SET discontinued_at = '0044-03-15 BC' WHERE item_id = %s", (old,))
        connection.close()

    assert postgres.apply_migrations(pg_dsn)[0].startswith("0065_")

    assert f"sales.items holds rows whose discontinued_at the warehouse cannot load (item_id: {old})" in caplog.text
    validated = run(
        pg_dsn, "SELECT conname::text, convalidated FROM pg_constraint WHERE conname LIKE %s ORDER BY 1", "%_loadable"
    )
    assert validated == [
        ("items_discontinued_at_loadable", False),
        ("transactions_completed_at_loadable", True),
        ("transactions_created_at_loadable", True),
    ]
    with pytest.raises(psycopg2.errors.CheckViolation):
        run(pg_dsn, "UPDATE sales.items SET discontinued_at = '294270-01-01' WHERE item_id = 1")


def test_no_writer_can_record_a_sale_at_a_time_the_warehouse_cannot_load(sales_dsn):
    for created_at in ("'0044-03-15 BC'", "'-infinity'"):
        # completed_at >= created_at: with created_at bounded, Logistics cannot complete a sale in 44 BC
        with pytest.raises(psycopg2.errors.CheckViolation, match="transactions_created_at_loadable"):
            run(sales_dsn, f"INSERT INTO sales.transactions (membership_id, total_price, total_weight_kg, created_at) "
                           f"VALUES ('{MEMBER}', 1, 1, {created_at})")  # fmt: skip


# -- as on RDS: the platform's role is no superuser ------------------------------------------------
def test_a_platform_role_that_is_no_superuser_migrates_and_offboards(pg_server_uri, make_database, caplog):
    """Set up as docs/access.md says for RDS: LOGIN CREATEROLE, pg_signal_backend, owner of its database."""
    platform = f"platform_{uuid.uuid4().hex[:6]}"
    run(pg_server_uri, f"CREATE ROLE {platform} LOGIN CREATEROLE PASSWORD '{PASSWORD}'")
    run(pg_server_uri, f"GRANT pg_signal_backend TO {platform}")
    database = urlsplit(make_database()).path.lstrip("/")
    run(pg_server_uri, f'ALTER DATABASE "{database}" OWNER TO {platform}')
    migrated(make_database())  # the team roles exist (cluster-wide) ...
    for team in access.TEAMS:  # ... and, as if this role had created them, it administers them
        run(pg_server_uri, f"GRANT {team} TO {platform} WITH ADMIN OPTION")
    parts = urlsplit(pg_server_uri)
    dsn = parts._replace(netloc=f"{platform}:{PASSWORD.replace(' ', '%20')}@", path=f"/{database}").geturl()
    try:
        assert postgres.apply_migrations(dsn)  # every migration, as this role
        assert "PUBLIC can still execute" in caplog.text  # 0050 could not revoke: said so, did not fail
        with team_user(dsn, "sales") as user:
            # only a superuser may set temp_file_limit: left out and said so, the other limits set
            assert f"{user}: temp_file_limit is not set" in caplog.text
            assert role_settings(pg_server_uri, user) == {
                name: value for name, value in access.TEAM_USER_LIMITS.items() if name != "temp_file_limit"
            }
            session = login(dsn, user)
            with session.cursor() as cursor:
                cursor.execute("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")
                cursor.execute("SELECT lo_create(0)")  # possible where 0050 could not revoke
            session.commit()
            assert access.remove_user(dsn, user) == access.Removal(sessions_ended=1, objects_reassigned=2)
            assert not role_exists(dsn, user)
    finally:
        admin = psycopg2.connect(pg_server_uri)
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
            cursor.execute(f"DROP ROLE {platform}")
        admin.close()


def test_a_password_a_user_sets_themselves_is_stored_hashed_and_md5_cannot_log_in(sales_dsn):
    assert run(sales_dsn, "SHOW password_encryption") == [("scram-sha-256",)]
    verifier = "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = %s"
    with team_user(sales_dsn, "logistics") as user:
        session = login(sales_dsn, user)
        session.autocommit = True
        with session.cursor() as cursor:
            cursor.execute(f"ALTER ROLE {user} PASSWORD 'plain text passphrase'")  # sent in plain text ...
            assert run(sales_dsn, verifier, user) == [("SCRAM-SHA-256$",)]  # ... stored as a SCRAM verifier
            login(sales_dsn, user, password="plain text passphrase").close()
            cursor.execute("SET password_encryption = 'md5'")
            cursor.execute(f"ALTER ROLE {user} PASSWORD 'an md5 passphrase'")
        session.close()
        assert run(sales_dsn, verifier, user)[0][0].startswith("md5")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(sales_dsn, user, password="an md5 passphrase")  # the server only takes SCRAM


# -- connections ------------------------------------------------------------------------------------
def test_a_team_user_cannot_take_every_connection_of_the_server(sales_dsn):
    with team_user(sales_dsn, "analytics") as user:
        held = [login(sales_dsn, user) for _ in range(access.TEAM_USER_CONNECTION_LIMIT)]
        try:
            with pytest.raises(psycopg2.OperationalError, match="too many connections for role"):
                login(sales_dsn, user)
            psycopg2.connect(sales_dsn).close()  # the platform still gets in
        finally:
            for connection in held:
                connection.close()


def role_settings(dsn: str, user: str) -> dict[str, str]:
    rows = run(
        dsn,
        "SELECT unnest(setconfig) FROM pg_db_role_setting WHERE setdatabase = 0 AND setrole = %s::regrole",
        user,
    )
    return dict(row[0].split("=", 1) for row in rows)


def test_team_users_log_in_with_limits_and_cannot_lift_the_disk_one(sales_dsn):
    with team_user(sales_dsn, "sales") as user:
        session = login(sales_dsn, user)
        session.autocommit = True
        with session.cursor() as cursor:
            for name, value in access.TEAM_USER_LIMITS.items():
                cursor.execute(f"SHOW {name}")
                assert cursor.fetchone() == (value,)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="temp_file_limit"):
                cursor.execute("SET temp_file_limit = -1")
        session.close()


def test_team_users_created_before_the_limits_get_them_from_the_migration(sales_dsn):
    earlier, chosen = (f"{name}_{uuid.uuid4().hex[:6]}" for name in ("earlier", "chosen"))
    run(sales_dsn, f"CREATE ROLE {earlier} LOGIN IN ROLE logistics")
    run(sales_dsn, f"CREATE ROLE {chosen} LOGIN IN ROLE analytics")
    run(sales_dsn, f"ALTER ROLE {chosen} SET statement_timeout = '2h'")  # an administrator's choice stays
    try:
        migration = next(p for p in postgres.migration_files() if p.name.startswith("0064_"))
        run(sales_dsn, migration.read_text())
        run(sales_dsn, migration.read_text())  # again: nothing changes
        assert role_settings(sales_dsn, earlier) == access.TEAM_USER_LIMITS
        assert role_settings(sales_dsn, chosen) == {**access.TEAM_USER_LIMITS, "statement_timeout": "2h"}
    finally:
        run(sales_dsn, f"DROP ROLE {earlier}")
        run(sales_dsn, f"DROP ROLE {chosen}")


def test_team_users_created_before_the_limit_get_it_from_the_migration(sales_dsn):
    earlier = f"earlier_{uuid.uuid4().hex[:6]}"
    run(sales_dsn, f"CREATE ROLE {earlier} LOGIN IN ROLE sales")
    try:
        migration = next(p for p in postgres.migration_files() if p.name.startswith("0053_"))
        run(sales_dsn, migration.read_text())
        assert run(sales_dsn, "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", earlier) == [(10,)]
    finally:
        run(sales_dsn, f"DROP ROLE {earlier}")


def test_a_password_a_user_gives_themselves_is_replaced_by_the_audit(sales_dsn, monkeypatch):
    monkeypatch.setenv("MEMBERFLOW_PG_DSN", sales_dsn)
    with team_user(sales_dsn, "sales") as rule_breaker, team_user(sales_dsn, "sales") as keeps_the_rules:
        session = login(sales_dsn, rule_breaker)
        session.autocommit = True
        session.cursor().execute(f"ALTER ROLE {rule_breaker} PASSWORD 'x'")  # 1 character: the server takes it
        login(sales_dsn, rule_breaker, password="x").close()

        result = team_password_audit_sensor(
            build_sensor_context(resources={"sales_db": SalesDatabase.from_settings(Settings.from_env())})
        )

        assert f"password replaced: {rule_breaker}" in result.skip_message
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            login(sales_dsn, rule_breaker, password="x")
        with pytest.raises(psycopg2.OperationalError):  # the session that set it was ended
            session.cursor().execute("SELECT 1")
        login(sales_dsn, keeps_the_rules).close()  # untouched
        with psycopg2.connect(sales_dsn) as platform:  # back in through the tool, with its rules
            access.set_password(platform, rule_breaker, "a proper long passphrase")
            assert access.audit_passwords(platform).replaced == []  # and it stays
        platform.close()
        login(sales_dsn, rule_breaker, password="a proper long passphrase").close()


def test_the_audit_records_users_it_has_no_record_of_without_touching_them(sales_dsn):
    earlier = f"earlier_{uuid.uuid4().hex[:6]}"
    run(sales_dsn, f"CREATE ROLE {earlier} LOGIN PASSWORD '{PASSWORD}' IN ROLE analytics")
    try:
        with psycopg2.connect(sales_dsn) as platform:
            first, second = access.audit_passwords(platform), access.audit_passwords(platform)
        platform.close()
        assert earlier in first.adopted and earlier not in first.replaced
        assert earlier not in second.adopted + second.replaced
        login(sales_dsn, earlier).close()
    finally:
        run(sales_dsn, f"DROP ROLE {earlier}")
