"""CI cannot quietly skip PostgreSQL: without a server URL its PostgreSQL runs fail instead of vanishing."""

from __future__ import annotations

import pytest

from tests.databases import URL_VARIABLE, database_kinds, postgres_url, sqlite_only_note


def test_ci_runs_the_storage_suite_on_postgresql_or_fails(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    assert database_kinds() == ["sqlite", "postgresql"]
    with pytest.raises(pytest.fail.Exception, match="CI must run the storage tests on PostgreSQL"):
        postgres_url()


def test_a_developer_without_postgresql_gets_sqlite_and_a_note(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(URL_VARIABLE, raising=False)
    assert database_kinds() == ["sqlite"]
    assert ".ci/postgres start" in sqlite_only_note()
    monkeypatch.setenv(URL_VARIABLE, "postgresql+asyncpg://idefics:x@127.0.0.1:5432/idefics_test")
    assert database_kinds() == ["sqlite", "postgresql"] and sqlite_only_note() is None
