"""`memberflow samples`: sample application files for the landing zone; `memberflow members-rebuild`:
sales.members replayed from every successful file (disaster recovery)."""

import argparse

from memberflow_assets.membership.layout import LANDING_PREFIX
from memberflow_assets.membership.members_load import rebuild_members
from memberflow_assets.membership.samples import generate_applications
from memberflow_assets.settings import Settings
from memberflow_assets.zones import Zones


def write_samples(files: int, rows: int, prefix: str = "applications_sample") -> list[str]:
    """Write `files` deterministic CSV files into the landing zone, skipping names that exist."""
    zones = Zones.from_settings()
    written = []
    for number in range(1, files + 1):
        relpath = f"{LANDING_PREFIX}/{prefix}_{number}.csv"
        if zones.exists(relpath):
            continue
        frame = generate_applications(rows, seed=number)
        zones.write_bytes(relpath, frame.to_csv(index=False).encode())
        written.append(zones.url(relpath))
    return written


def _samples(args: argparse.Namespace) -> int:
    for url in write_samples(args.files, args.rows, args.prefix):
        print(url)
    return 0


def _members_rebuild(args: argparse.Namespace) -> int:
    from memberflow_assets.resources import SalesDatabase

    settings = Settings.from_env()
    batches = rebuild_members(Zones.from_settings(settings), SalesDatabase.from_settings(settings).connect)
    print(f"replayed {batches} batch file(s) into sales.members")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("samples", help="write sample application files into the landing zone")
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--prefix", default="applications_sample")
    parser.set_defaults(handler=_samples)

    rebuild = subparsers.add_parser(
        "members-rebuild",
        help="disaster recovery: replay every successful file into sales.members, in landing order (O(history))",
    )
    rebuild.set_defaults(handler=_members_rebuild)
