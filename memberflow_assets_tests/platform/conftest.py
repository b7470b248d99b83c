import pytest

from memberflow_assets_tests.conftest import ENV_VARS


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No configuration but a data dir in tmp_path: every setting at its default."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMBERFLOW_DATA_DIR", str(tmp_path))
    return monkeypatch
