"""`memberflow access ...` (team users of the sales database) and `memberflow sales-demo`."""

import argparse
import getpass
import os
import sys
from datetime import date

from memberflow_assets.resources import SalesDatabase
from memberflow_assets.sales import access
from memberflow_assets.sales.demo_data import DemoSpec, seed_demo_sales
from memberflow_assets.settings import Settings

PASSWORD_ENV = "MEMBERFLOW_USER_PASSWORD"


def sales_database() -> SalesDatabase:
    """The sales database of this command's configuration."""
    return SalesDatabase.from_settings(Settings.from_env())


def read_password(user: str) -> str:
    """The new password: $MEMBERFLOW_USER_PASSWORD, else typed twice at a terminal prompt."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    if not sys.stdin.isatty():
        raise access.AccessError(f"no password: set {PASSWORD_ENV} or run the command in a terminal")
    first = getpass.getpass(f"new password for {user}: ")
    if first != getpass.getpass("repeat it: "):
        raise access.AccessError("the two passwords differ")
    return first


def _create_user(args: argparse.Namespace) -> int:
    password = read_password(args.user)
    with sales_database().connect() as connection:
        access.create_user(connection, args.team, args.user, password)
    print(f"created {args.user} in team {args.team}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    password = read_password(args.user)
    with sales_database().connect() as connection:
        access.set_password(connection, args.user, password)
    print(f"password of {args.user} replaced")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    removal = access.remove_user(sales_database().get_dsn(), args.user)
    print(
        f"removed {args.user} ({removal.sessions_ended} open session(s) ended, "
        f"{removal.objects_reassigned} object(s) they owned now owned by the platform's role)"
    )
    return 0


def _list_users(args: argparse.Namespace) -> int:
    with sales_database().connect() as connection:
        for user in access.list_users(connection):
            print(f"{user.team:<10} {user.name}{'' if user.can_login else '  (cannot log in)'}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    with sales_database().connect() as connection:
        audit = access.audit_passwords(connection)
    if audit is None:
        print("cannot read password verifiers here (the platform's role is not a superuser): nothing audited")
        return 0
    print(f"{audit.checked} team user(s) checked")
    for user in audit.replaced:
        print(f"{user} had set their own password: replaced by a random one, sessions ended")
    for user in audit.adopted:
        print(f"{user}: password recorded as it is (had no record yet)")
    return 0


def _access(args: argparse.Namespace) -> int:
    try:
        return args.access_handler(args)
    except access.AccessError as error:
        print(f"memberflow access: {error}", file=sys.stderr)
        return 2


def _sales_demo(args: argparse.Namespace) -> int:
    spec = DemoSpec(
        seed=args.seed,
        manufacturers=args.manufacturers,
        items=args.items,
        transactions_per_member=args.transactions_per_member,
        first_day=date.fromisoformat(args.first_day),
        days=args.days,
    )
    with sales_database().connect() as connection:
        result = seed_demo_sales(connection, spec)
    print(
        f"catalogue: {result.manufacturers_created} manufacturers and {result.items_created} items created; "
        f"{result.transactions_created} transactions with {result.lines_created} lines "
        f"for {result.members_served} member(s) that had none"
    )
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("access", help="team users of the sales database (docs/access.md)")
    parser.set_defaults(handler=_access)
    commands = parser.add_subparsers(dest="access_command", required=True)

    create = commands.add_parser(
        "create-user", help=f"a login user in a team; password from ${PASSWORD_ENV} or a prompt"
    )
    create.add_argument("user")
    create.add_argument("--team", required=True, choices=access.TEAMS)
    create.set_defaults(access_handler=_create_user)

    rotate = commands.add_parser("set-password", help=f"replace a team user's password (${PASSWORD_ENV} or a prompt)")
    rotate.add_argument("user")
    rotate.set_defaults(access_handler=_set_password)

    remove = commands.add_parser("remove-user", help="disable a team user's login, end their sessions, drop the role")
    remove.add_argument("user")
    remove.set_defaults(access_handler=_remove_user)

    commands.add_parser("list", help="the users of every team").set_defaults(access_handler=_list_users)
    commands.add_parser(
        "audit", help="replace passwords team users set themselves (the team_password_audit_sensor does it every 30 s)"
    ).set_defaults(access_handler=_audit)

    defaults = DemoSpec()
    demo = subparsers.add_parser(
        "sales-demo", help="deterministic demo catalogue and transactions for the members without any"
    )
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--manufacturers", type=int, default=defaults.manufacturers)
    demo.add_argument("--items", type=int, default=defaults.items)
    demo.add_argument("--transactions-per-member", type=int, default=defaults.transactions_per_member)
    demo.add_argument("--first-day", default=defaults.first_day.isoformat())
    demo.add_argument("--days", type=int, default=defaults.days)
    demo.set_defaults(handler=_sales_demo)
