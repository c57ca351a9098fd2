"""Start-up refuses a root delay of half the epoch or more: a root must mature well before the
next epoch's root would replace it."""

import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[2]


def start(**env):
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "marketplace.settings",
            "DJANGO_SECRET_KEY": "x",
            **env,
        },
    )


def test_a_root_delay_of_half_the_epoch_is_refused_with_a_clear_message():
    result = start(REWARD_EPOCH_SECONDS="120", REWARD_ROOT_DELAY="60")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert (
        "REWARD_ROOT_DELAY (60 s) must be less than half of REWARD_EPOCH_SECONDS (120 s)"
        in result.stderr
    )


def test_a_shorter_root_delay_starts():
    result = start(REWARD_EPOCH_SECONDS="300", REWARD_ROOT_DELAY="60")
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
