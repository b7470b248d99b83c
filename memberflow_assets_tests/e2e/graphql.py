"""Asking a running `dagster dev` through its GraphQL API."""

import httpx

PARTITION_STATS = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed } }
  }
}
"""


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    # a loaded machine can take longer than httpx's default 5 s to answer
    response = httpx.post(
        f"http://127.0.0.1:{port}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    return response.json()["data"]
