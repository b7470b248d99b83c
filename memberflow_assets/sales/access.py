"""Login users for the teams' group roles (logistics, analytics, sales). No Dagster.

The group roles and their privileges are a migration (sql/migrations/0012_sales_access.sql); this
module only adds, re-keys and removes the people in them. Passwords are turned into a SCRAM-SHA-256
verifier on the client (libpq's PQencryptPasswordConn), so the plain text never reaches the server,
its logs or pg_stat_statements. See docs/access.md.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import encrypt_password

from memberflow_assets import postgres

log = logging.getLogger(__name__)

TEAMS = ("logistics", "analytics", "sales")
# Settings a team's users log in with (role settings are not inherited from the group role).
TEAM_SESSION_SETTINGS = {"analytics": {"default_transaction_read_only": "on"}}
# ... and every team user: no runaway query fills the server's disk with temporary files (a user cannot
# raise temp_file_limit), runs for hours, or leaves a transaction open that holds locks the platform
# waits for and keeps VACUUM from cleaning up (docs/access.md). Also set for users created
# earlier (0064_team_user_limits.sql).
TEAM_USER_LIMITS = {
    "temp_file_limit": "2GB",
    "statement_timeout": "30min",
    "idle_in_transaction_session_timeout": "15min",
}
MIN_PASSWORD_LENGTH = 12
# Sessions one team user may hold at once, so that nobody can take the server's connections
# (max_connections) from the platform. Also set for users created earlier (0053_team_connection_limit.sql).
TEAM_USER_CONNECTION_LIMIT = 10
_USER_NAME = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


class AccessError(ValueError):
    """A request the access commands refuse (unknown team, bad name, weak password, ...)."""


@dataclass(frozen=True)
class TeamUser:
    name: str
    team: str
    can_login: bool


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccessError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")


def _verifier(connection: PgConnection, user: str, password: str) -> str:
    return encrypt_password(password, user, connection, "scram-sha-256")


def team_of(connection: PgConnection, user: str) -> str | None:
    """The team whose group role `user` is a member of, or None (not a team user)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT g.rolname FROM pg_auth_members am "
            "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles u ON u.oid = am.member "
            "WHERE u.rolname = %s AND g.rolname = ANY(%s) ORDER BY 1",
            (user, list(TEAMS)),
        )
        teams = [row[0] for row in cursor.fetchall()]
    return teams[0] if teams else None


def _team_user(connection: PgConnection, user: str) -> str:
    team = team_of(connection, user)
    if team is None:
        raise AccessError(f"{user!r} is not a user of any team ({', '.join(TEAMS)}); refusing to touch it")
    return team


def create_user(connection: PgConnection, team: str, user: str, password: str) -> None:
    """A login role `user` in group role `team`, with a SCRAM password (in the caller's transaction)."""
    if team not in TEAMS:
        raise AccessError(f"unknown team {team!r}; teams: {', '.join(TEAMS)}")
    if not _USER_NAME.match(user) or user in TEAMS:
        raise AccessError(
            f"invalid user name {user!r}: 3-63 characters, lower-case letters, digits and '_', "
            "starting with a letter, and not a team name"
        )
    _check_password(password)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
        if cursor.fetchone():
            raise AccessError(f"a role named {user!r} exists already")
        cursor.execute(
            sql.SQL("CREATE ROLE {} LOGIN INHERIT CONNECTION LIMIT {} IN ROLE {}").format(
                sql.Identifier(user), sql.Literal(TEAM_USER_CONNECTION_LIMIT), sql.Identifier(team)
            )
        )
        _give_password(cursor, user, _verifier(connection, user, password))
        for name, value in {**TEAM_USER_LIMITS, **TEAM_SESSION_SETTINGS.get(team, {})}.items():
            _set_role_setting(cursor, user, name, value)


def _set_role_setting(cursor, user: str, name: str, value: str) -> None:
    """`ALTER ROLE user SET name = value`; a setting only a superuser may give (temp_file_limit, where the
    platform's role is none, as on RDS) is left out with a warning naming what to do."""
    cursor.execute("SAVEPOINT role_setting")
    try:
        statement = sql.SQL("ALTER ROLE {} SET {} = %s").format(sql.Identifier(user), sql.Identifier(name))
        cursor.execute(statement, (value,))
    except psycopg2.errors.InsufficientPrivilege as error:
        cursor.execute("ROLLBACK TO SAVEPOINT role_setting")
        log.warning(
            "%s: %s is not set (%s): a superuser must set it, or GRANT SET ON PARAMETER %s to the platform's role",
            user,
            name,
            str(error).strip(),
            name,
        )
    cursor.execute("RELEASE SAVEPOINT role_setting")


def set_password(connection: PgConnection, user: str, password: str) -> None:
    """Replace a team user's password (rotation)."""
    _team_user(connection, user)
    _check_password(password)
    with connection.cursor() as cursor:
        _give_password(cursor, user, _verifier(connection, user, password))


# Every password `memberflow access` gives is recorded as a SHA-256 of its verifier in the role's
# comment, which the user cannot change (COMMENT ON ROLE needs CREATEROLE): a user who set their
# own password (ALTER ROLE ... PASSWORD, psql's \password: any length, no rules) no longer matches,
# and audit_passwords() replaces it.
_PASSWORD_MARK = "memberflow access gave this password: sha256 "


def _give_password(cursor, user: str, verifier: str) -> None:
    role = sql.Identifier(user)
    cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(role), (verifier,))
    cursor.execute(sql.SQL("COMMENT ON ROLE {} IS %s").format(role), (_mark(verifier),))


def _mark(verifier: str) -> str:
    return _PASSWORD_MARK + hashlib.sha256(verifier.encode()).hexdigest()


@dataclass(frozen=True)
class PasswordAudit:
    checked: int  # team users with a password
    adopted: list[str]  # had no mark yet (created before the audit existed, or by hand): recorded as they are
    replaced: list[str]  # had set their own password: now a random one nobody knows, sessions ended


def audit_passwords(connection: PgConnection) -> PasswordAudit | None:
    """Replace every team user's password that `memberflow access` did not give (in the caller's
    transaction). Needs to read the verifiers (pg_authid), i.e. a superuser: returns None elsewhere
    (RDS, where rds.restrict_password_commands keeps users from setting passwords at all)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            "SELECT DISTINCT u.rolname::text, u.rolpassword, shobj_description(u.oid, 'pg_authid') "
            "FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid JOIN pg_authid u ON u.oid = am.member "
            "WHERE g.rolname = ANY(%s) AND u.rolcanlogin AND u.rolpassword IS NOT NULL ORDER BY 1",
            (list(TEAMS),),
        )
        users = cursor.fetchall()
        adopted, replaced = [], []
        for user, verifier, comment in users:
            if comment is None or not comment.startswith(_PASSWORD_MARK):
                cursor.execute(sql.SQL("COMMENT ON ROLE {} IS %s").format(sql.Identifier(user)), (_mark(verifier),))
                adopted.append(user)
            elif comment != _mark(verifier):
                _give_password(cursor, user, _verifier(connection, user, secrets.token_urlsafe(32)))
                cursor.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = %s", (user,)
                )
                replaced.append(user)
    return PasswordAudit(checked=len(users), adopted=adopted, replaced=replaced)


@dataclass(frozen=True)
class Removal:
    sessions_ended: int
    objects_reassigned: int  # what the user owned (large objects, default privileges, ...), now the platform's


def remove_user(dsn: str, user: str) -> Removal:
    """Offboard a team user: first and on its own, the login is disabled (committed at once), then
    the user's sessions end, whatever they own in any database of the server is handed to the
    platform's role (REASSIGN OWNED), their remaining privileges are dropped (DROP OWNED) and the
    role is dropped. A failure after the first step leaves a role that cannot log in, and says so.
    Opens its own connections (to every database the user owns something in)."""
    connection = postgres.connect(dsn, "memberflow-access")
    try:
        connection.autocommit = True  # the NOLOGIN must hold even if everything after it fails
        _team_user(connection, user)
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(user)))
        try:
            return _end_sessions_and_drop(connection, dsn, user)
        except psycopg2.Error as error:
            raise AccessError(
                f"{user!r} can no longer log in, but removing the role failed: "
                f"{(error.pgerror or str(error)).strip()}; fix that and run remove-user again"
            ) from error
    finally:
        connection.close()


def _end_sessions_and_drop(connection: PgConnection, dsn: str, user: str) -> Removal:
    role = sql.Identifier(user)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE usename = %s",
            (user,),
        )
        ended = cursor.fetchone()[0]
        # Where the user owns (deptype 'o') or holds something: objects can live in any database.
        cursor.execute(
            "SELECT count(*) FILTER (WHERE d.deptype = 'o'), "
            "coalesce(array_agg(DISTINCT db.datname) FILTER (WHERE db.datname <> current_database()), '{}') "
            "FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid JOIN pg_database db ON db.oid = d.dbid "
            "WHERE r.rolname = %s",
            (user,),
        )
        owned, other_databases = cursor.fetchone()
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            # REASSIGN/DROP OWNED need the privileges of the user's role (RDS: CREATEROLE, not superuser).
            cursor.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
    for database in other_databases:
        other = postgres.connect(postgres.with_database(dsn, database), "memberflow-access")
        try:
            with other, other.cursor() as cursor:
                _hand_over(cursor, role)
        finally:
            other.close()
    connection.autocommit = False
    with connection, connection.cursor() as cursor:
        _hand_over(cursor, role)
        cursor.execute(sql.SQL("DROP ROLE {}").format(role))
    return Removal(sessions_ended=ended, objects_reassigned=owned)


def _hand_over(cursor, role: sql.Identifier) -> None:
    cursor.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(role))
    cursor.execute(sql.SQL("DROP OWNED BY {}").format(role))


def list_users(connection: PgConnection) -> list[TeamUser]:
    """Every member of a team role, by team and name."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.rolname, g.rolname, u.rolcanlogin FROM pg_auth_members am "
            "JOIN pg_roles g ON g.oid = am.roleid JOIN pg_roles u ON u.oid = am.member "
            "WHERE g.rolname = ANY(%s) ORDER BY g.rolname, u.rolname",
            (list(TEAMS),),
        )
        return [TeamUser(*row) for row in cursor.fetchall()]
