"""Attacks on the sales database by its own team users, against real PostgreSQL with team logins:
each test reproduces one way a team user could stop the platform, create something, see what is
hidden from them or outlive their offboarding, and shows that it no longer works."""

from urllib.parse import urlsplit

import psycopg2
import pytest

from memberflow_assets import cli
from memberflow_assets.sales import access

from .sales_data import login, migrated, role_exists, team_user


def run(dsn: str, statement: str, *params) -> list[tuple]:
    """Run one statement as the platform's role (committed); its rows, if any."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows


def give_large_object(dsn: str, owner: str, content: bytes = b"evidence") -> int:
    """A large object owned by `owner`, as one created before the server refused that to teams."""
    oid = run(dsn, "SELECT lo_from_bytea(0, %s)", content)[0][0]
    run(dsn, f'ALTER LARGE OBJECT {oid} OWNER TO "{owner}"')
    return oid


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
