"""Settings come from the environment; bad or missing production values fail loudly."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatsite.env import env_bool, env_disconnect_policy, env_float, env_int, env_list
from conversations.checks import check_model_connections
from tests.servers import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('loaded')"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "chatsite.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_key_fails_with_a_clear_message():
    result = load_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_development_runs_without_secret_key():
    assert load_settings(DEBUG="1").stdout.strip() == "loaded"


def test_env_helpers_refuse_bad_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "maybe")
    monkeypatch.setenv("X_INT", "ten")
    monkeypatch.setenv("X_SMALL", "0")
    monkeypatch.setenv("X_FLOAT", "-1")
    with pytest.raises(ImproperlyConfigured, match="X_BOOL"):
        env_bool("X_BOOL")
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_SMALL", 5, minimum=1)
    with pytest.raises(ImproperlyConfigured, match="X_FLOAT"):
        env_float("X_FLOAT", 1.0)


def test_env_helpers_read_good_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "Yes")
    monkeypatch.setenv("X_LIST", " a.example, ,b.example ")
    assert env_bool("X_BOOL") is True
    assert env_bool("X_UNSET", True) is True
    assert env_list("X_LIST") == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("raw", "policy"),
    [("continue", "continue"), (" Cancel ", "cancel"), ("0", 0.0), ("2.5", 2.5), ("", "cancel")],
)
def test_a_disconnect_policy_is_continue_cancel_or_a_grace_period(monkeypatch, raw, policy):
    monkeypatch.setenv("X_POLICY", raw)
    assert env_disconnect_policy("X_POLICY", "cancel") == policy
    assert env_disconnect_policy("X_UNSET_POLICY", "continue") == "continue"


@pytest.mark.parametrize("raw", ["stop", "-1", "inf", "nan"])
def test_a_bad_disconnect_policy_stops_the_start_with_a_clear_message(raw):
    result = load_settings(DEBUG="1", V1_DISCONNECT_POLICY=raw)
    assert result.returncode != 0
    assert "V1_DISCONNECT_POLICY must be" in result.stderr


def check_messages(**env: str) -> str:
    """What `manage.py check` says with these variables set."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def test_model_connections_follow_running_answers_by_default():
    # Only the lowered limit is set: the connections follow it, so `check` is quiet.
    assert "conversations.W002" not in check_messages(MAX_RUNNING_TURNS="50")


@pytest.mark.parametrize(
    ("running", "connections", "warned"),
    [(500, 500, False), (50, 50, False), (500, 200, True), (0, 9, True)],
)
def test_check_says_when_model_connections_are_fewer_than_running_answers(
    settings, running, connections, warned
):
    settings.MAX_RUNNING_TURNS, settings.LLM_MAX_CONNECTIONS = running, connections

    messages = check_model_connections(None)

    assert [m.id for m in messages] == (["conversations.W002"] if warned else [])
    if running and warned:
        assert f"LLM_MAX_CONNECTIONS ({connections}) is below MAX_RUNNING_TURNS ({running})" in (
            messages[0].msg
        )
