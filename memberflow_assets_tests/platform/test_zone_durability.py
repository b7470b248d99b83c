"""A durable write (`Zones.write_all(..., fsync=True)`): its files' data, the folders it renamed them into,
and the parent of every folder it had to create are fsynced before it returns — a new hour's folder
whose own entry is not on disk can vanish in a power failure with every image renamed into it."""

import os

from memberflow_assets.zones import TEMPORARY_DIR, Zones


def test_a_durable_write_into_new_folders_fsyncs_their_parents_and_later_writes_only_their_folder(
    tmp_path, monkeypatch
):
    synced: list[str] = []
    fsync = os.fsync

    def recorded(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recorded)
    root = tmp_path / "zones"
    root.mkdir()
    hour = root / "landing" / "images" / "2026-12-02" / "13"
    files = [("landing/images/2026-12-02/13/a.jpg", b"image"), ("landing/images/2026-12-02/13/a.json", b"{}")]

    Zones(str(root)).write_all(files, fsync=True)

    assert (hour / "a.jpg").read_bytes() == b"image"
    folders = {path for path in synced if os.path.isdir(path)}
    assert folders == {str(hour), str(hour.parent), str(root / "landing" / "images"), str(root / "landing"), str(root)}
    staged = [path for path in synced if not os.path.isdir(path)]
    assert len(staged) == 2 and all(f"/{TEMPORARY_DIR}/" in path for path in staged)  # the data, before the renames

    synced.clear()
    Zones(str(root)).write_all([("landing/images/2026-12-02/13/b.jpg", b"more")], fsync=True)
    assert {path for path in synced if os.path.isdir(path)} == {str(hour)}

    synced.clear()
    Zones(str(root)).write_all([("landing/images/2026-12-02/14/c.jpg", b"next hour")])
    assert synced == []  # not durable: no fsync at all
