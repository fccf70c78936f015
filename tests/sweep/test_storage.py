"""Opening a study's storage while another coordinator creates the same fresh database's tables: the loser of that
race retries, a real error does not. On PostgreSQL the loser sees `relation "studies" already exists` (measured:
1 of 6 fresh databases opened by 2 processes at once; CI's two-coordinator test failed on it once)."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy.exc

from ups.spec.errors import SpecError
from ups.spec.schema import SweepConfig
from ups.sweep import study


class _Flaky:
    """Stands in for RDBStorage: raises `errors` one by one, then builds the real (sqlite) storage."""

    def __init__(self, errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self, url, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return RDB(url, **kwargs)


RDB = optuna.storages.RDBStorage


def _programming_error(message: str) -> sqlalchemy.exc.ProgrammingError:
    return sqlalchemy.exc.ProgrammingError("CREATE TABLE studies (...)", {}, Exception(message))


def test_losing_the_table_creation_race_retries(tmp_path, monkeypatch):
    flaky = _Flaky([_programming_error('relation "studies" already exists')])
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    monkeypatch.setattr(study.time, "sleep", lambda s: None)
    storage = study.make_storage(f"sqlite:///{tmp_path / 'o.db'}", SweepConfig())
    assert flaky.calls == 2
    assert storage.get_all_studies() == []  # a working storage


def test_a_real_programming_error_is_not_retried(tmp_path, monkeypatch):
    flaky = _Flaky([_programming_error("permission denied for schema public")])
    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    with pytest.raises(SpecError, match=r"cannot open the Optuna storage \(ProgrammingError\)"):
        study.make_storage(f"sqlite:///{tmp_path / 'o.db'}", SweepConfig())
    assert flaky.calls == 1
