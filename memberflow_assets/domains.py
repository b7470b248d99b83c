"""Each domain folder is one asset group, and its jobs carry the domain in one tag (runs filter by it in the UI)."""

DOMAIN_TAG = "memberflow/domain"


def domain_tags(group: str) -> dict[str, str]:
    """The tags of a job of the domain whose asset group is `group`."""
    return {DOMAIN_TAG: group}
