"""Ray is never started or joined with token authentication off, unless the config says so."""
from __future__ import annotations

import pytest

from model.errors import UsageError
from pipeline.config import load_config
from pipeline.raysession import require_token_auth


def test_auth_mode_disabled_is_refused_and_the_message_names_the_override(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UsageError, match="cluster.allow_unauthenticated=true") as e:
        require_token_auth(load_config(None))
    assert "every network interface" in str(e.value)


def test_the_explicit_override_lets_it_through(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    require_token_auth(load_config(None, ["cluster.allow_unauthenticated=true"]))


def test_unset_means_token_when_ray_is_not_imported_yet(monkeypatch):
    """Ray reads RAY_AUTH_MODE once, when it is imported: set it only before that."""
    import os
    import sys

    monkeypatch.setenv("RAY_AUTH_MODE", "unset below")  # so that the test's end unsets it again
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    require_token_auth(load_config(None))
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_a_local_dashboard_listens_on_loopback_by_default():
    assert load_config(None).cluster.dashboard_host == "127.0.0.1"
