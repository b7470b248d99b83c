"""The code base stays ruff-clean (lint and format), as the team agreed."""

import subprocess
import sys

from memberflow_assets.settings import REPO_ROOT


def test_ruff_check_and_format():
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
