"""Issue 11 item 7: a deprecated model is sold until its `retires_on`, not after. `retire_due_models`
retires what is due (the cron scheduler and `flask catalog sync` run it with the UTC date); a later
sync does not bring it back; the gateway's refusal names the retirement and the replacement.

Every test passes its date: none depends on the day it runs.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import event, select, text

from app.extensions import db
from app.models import AuditLogEntry, CatalogModel
from app.proxy import catalog_cache
from app.proxy.errors import ProxyError
from app.proxy.gateway import resolve_cached_model, resolve_model
from app.services.catalog import (
    CATALOG_PATH,
    CatalogError,
    retire_due_models,
    set_model_enabled,
    sync_catalog,
)

MARGIN_BPS = 1000
# The bundled file's deprecated models by retirement date (read from the file by bundled_due).
DUE_2026_12_11 = ["gpt-5", "gpt-5-mini", "gpt-5-nano", "o3"]
DUE_2027_01_14 = ["gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini"]


def bundled() -> dict[str, dict]:
    return {entry["id"]: entry for entry in json.loads(CATALOG_PATH.read_text())["models"]}


def bundled_due(today: date) -> list[str]:
    """Independently of the service: the file's deprecated models whose date is today or past."""
    return sorted(
        model_id
        for model_id, entry in bundled().items()
        if entry["status"] == "deprecated" and date.fromisoformat(entry["retires_on"]) <= today
    )


def state() -> dict[str, tuple]:
    """(status, enabled, version) of every model, read by plain SQL."""
    rows = db.session.execute(
        text("SELECT model_id, status, enabled, version FROM catalog_models")
    ).all()
    return {r.model_id: (r.status, bool(r.enabled), r.version) for r in rows}


def audit(action: str | None = None) -> list[AuditLogEntry]:
    query = select(AuditLogEntry).order_by(AuditLogEntry.id)
    if action:
        query = query.where(AuditLogEntry.action == action)
    return list(db.session.scalars(query))


def model_row(model_id: str) -> CatalogModel:
    return db.session.scalar(select(CatalogModel).where(CatalogModel.model_id == model_id))


@pytest.fixture
def synced(app_ctx):
    sync_catalog(MARGIN_BPS)
    db.session.commit()


# --- the service ---------------------------------------------------------------------------------


def test_issue11_item7_the_file_dates_are_the_ones_these_tests_name():
    assert bundled_due(date(2026, 12, 11)) == DUE_2026_12_11
    assert bundled_due(date(2027, 1, 14)) == sorted(DUE_2026_12_11 + DUE_2027_01_14)


def test_issue11_item7_due_models_are_retired_disabled_and_audited(synced):
    before = state()
    retired = retire_due_models(date(2026, 12, 11))
    db.session.commit()
    assert retired == DUE_2026_12_11
    after = state()
    for model_id, (status, enabled, version) in after.items():
        if model_id in DUE_2026_12_11:
            assert (status, enabled) == ("retired", False), model_id
            # The trigger of migration 0003 moved the version: every cached copy is stale.
            assert version != before[model_id][2], model_id
        else:
            assert (status, enabled, version) == before[model_id], model_id
    entries = audit()
    assert [(e.action, e.actor_id, e.target_account_id) for e in entries] == [
        ("catalog.retired_on_date", None, None)
    ] * 4
    by_model = {e.details["model"]: e for e in entries}
    assert sorted(by_model) == DUE_2026_12_11
    gpt5 = by_model["gpt-5"]
    assert gpt5.reason == "retired by its provider on 2026-12-11; use gpt-6.1-sol instead"
    assert gpt5.details == {
        "model": "gpt-5",
        "retires_on": "2026-12-11",
        "replacement": "gpt-6.1-sol",
        "was_enabled": True,
        "today": "2026-12-11",
    }
    assert by_model["gpt-5-mini"].details["replacement"] == "gpt-6.1-terra"


def test_issue11_item7_a_model_not_yet_due_is_left_on_sale(synced):
    before = state()
    assert retire_due_models(date(2026, 12, 10)) == []
    db.session.commit()
    assert state() == before
    assert audit() == []
    assert model_row("gpt-5").enabled and model_row("gpt-5").status == "deprecated"


def test_issue11_item7_retiring_is_idempotent_and_later_dates_retire_the_later_models(synced):
    assert retire_due_models(date(2026, 12, 11)) == DUE_2026_12_11
    db.session.commit()
    once = state()
    assert retire_due_models(date(2026, 12, 11)) == []
    assert retire_due_models(date(2026, 12, 12)) == []
    db.session.commit()
    assert state() == once
    assert len(audit()) == 4
    assert retire_due_models(date(2027, 1, 14)) == DUE_2027_01_14
    assert retire_due_models(date(2027, 1, 22)) == ["claude-opus-4-5"]
    db.session.commit()
    assert len(audit("catalog.retired_on_date")) == 9
    # The models the file itself calls retired were the sync's to disable, not this one's.
    assert {e.details["model"] for e in audit()} == set(bundled_due(date(2027, 1, 22)))


def test_issue11_item7_an_already_retired_or_admin_disabled_model(synced):
    # The file's own retired models (o4-mini retired 2026-10-23) are not retired again.
    assert model_row("o4-mini").status == "retired"
    set_model_enabled(model_row("o3"), False, actor_id=None, reason="provider is flaky")
    db.session.commit()
    assert retire_due_models(date(2026, 12, 11)) == DUE_2026_12_11
    db.session.commit()
    o3 = model_row("o3")
    assert (o3.status, o3.enabled) == ("retired", False)
    (entry,) = [e for e in audit("catalog.retired_on_date") if e.details["model"] == "o3"]
    assert entry.details["was_enabled"] is False
    assert "o4-mini" not in {e.details.get("model") for e in audit("catalog.retired_on_date")}
    # Retired now: an admin cannot sell it again.
    with pytest.raises(CatalogError, match="retired by its provider"):
        set_model_enabled(o3, True, actor_id=None, reason="customers ask")


def test_issue11_item7_takes_a_date_not_a_datetime(synced):
    with pytest.raises(TypeError):
        retire_due_models(datetime(2026, 12, 11, tzinfo=UTC))
    with pytest.raises(TypeError):
        retire_due_models("2026-12-11")


# --- the sync keeps them retired -----------------------------------------------------------------


def test_issue11_item7_a_later_sync_neither_unretires_nor_reenables(synced):
    retire_due_models(date(2026, 12, 11))
    db.session.commit()
    retired = state()
    report = sync_catalog(MARGIN_BPS)
    db.session.commit()
    # The file still says deprecated; the database's retirement stands, and nothing changed.
    assert state() == retired
    assert set(DUE_2026_12_11) <= set(report.unchanged)
    assert report.retired_disabled == [] and report.updated == []
    assert audit("catalog.sync_retired") == []
    for model_id in DUE_2026_12_11:
        assert (model_row(model_id).status, model_row(model_id).enabled) == ("retired", False)


def _entry(model_id: str, **overrides) -> dict:
    price = {"source": "https://example.com/pricing", "as_of": "2026-01-01"}
    entry = {
        "provider": "openai",
        "id": model_id,
        "name": model_id.upper(),
        "status": "active",
        "context_length": 1000,
        "max_output_tokens": 100,
        "prices": {"input": {"usd": "1", **price}, "output": {"usd": "2", **price}},
    }
    entry.update(overrides)
    return entry


def _catalogue(tmp_path, retires_on: str):
    path = tmp_path / "models.json"
    old = _entry("old", status="deprecated", retires_on=retires_on, replacement="new")
    path.write_text(json.dumps({"models": [old, _entry("new")]}))
    return path


def test_issue11_item7_a_postponed_retirement_makes_it_deprecated_again_but_not_sold(
    app_ctx, tmp_path
):
    sync_catalog(MARGIN_BPS, _catalogue(tmp_path, "2026-12-11"))
    assert retire_due_models(date(2026, 12, 11)) == ["old"]
    db.session.commit()
    # The same date, or an earlier one: still retired.
    for retires_on in ("2026-12-11", "2026-12-01"):
        sync_catalog(MARGIN_BPS, _catalogue(tmp_path, retires_on))
        db.session.commit()
        old = model_row("old")
        assert (old.status, old.enabled, old.retires_on) == (
            "retired",
            False,
            date.fromisoformat(retires_on),
        )
    # The provider postponed it: deprecated again, still disabled until an admin enables it.
    report = sync_catalog(MARGIN_BPS, _catalogue(tmp_path, "2027-03-01"))
    db.session.commit()
    old = model_row("old")
    assert (old.status, old.enabled, old.retires_on) == ("deprecated", False, date(2027, 3, 1))
    assert report.updated == ["old"]
    assert retire_due_models(date(2027, 2, 28)) == []
    assert retire_due_models(date(2027, 3, 1)) == ["old"]


# --- the gateway's refusal -----------------------------------------------------------------------


def refusal(name: str) -> ProxyError:
    with pytest.raises(ProxyError) as raised:
        resolve_model(name)
    assert raised.value.condition == "model_not_found" and raised.value.status == 404
    return raised.value


def test_issue11_item7_the_refusal_names_the_retirement_and_the_replacement(synced):
    retire_due_models(date(2026, 12, 11))
    set_model_enabled(model_row("gpt-4o-mini"), False, actor_id=None, reason="quota")
    set_model_enabled(model_row("gpt-6-luna"), False, actor_id=None, reason="quota")
    db.session.commit()
    assert refusal("gpt-5").message == (
        "The model 'gpt-5' was retired by its provider on 2026-12-11; use 'gpt-6.1-sol' instead."
    )
    assert refusal("openai/o3").message == (
        "The model 'openai/o3' was retired by its provider on 2026-12-11; use 'gpt-6.1-sol' instead."
    )
    # Retired by the file without a date.
    assert refusal("gemini-2.5-pro").message == (
        "The model 'gemini-2.5-pro' was retired by its provider; use 'gemini-3.1-pro-preview' "
        "instead."
    )
    # Disabled by an admin, not retired: not available (a deprecated one names its replacement).
    assert refusal("gpt-4o-mini").message == (
        "The model 'gpt-4o-mini' is not available; use 'gpt-6-luna' instead."
    )
    assert refusal("gpt-6-luna").message == "The model 'gpt-6-luna' is not available."
    # Unknown to the catalogue, or named with another provider's prefix: as before.
    for name in ("gpt-99", "anthropic/gpt-5", "anthropic/gpt-4o", "gpt-5\u00e9", "gpt-\ud800"):
        assert refusal(name).message == f"The model '{name}' does not exist or is not enabled."


def test_issue11_item7_the_success_path_never_reads_the_lifecycle(app, synced):
    statements: list[str] = []

    def note(conn, cursor, statement, *args):
        if "catalog_models" in statement:
            statements.append(statement)

    catalog_cache.forget("gpt-5")
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        resolve_cached_model("gpt-5")  # read and cached
        resolve_cached_model("gpt-5")  # from the cache
        assert len(statements) == 1 and "replacement_model_id" not in statements[0]
        retire_due_models(date(2026, 12, 11))
        db.session.commit()
        statements.clear()
        with pytest.raises(ProxyError, match="was retired"):
            resolve_cached_model("gpt-5", fresh=True)
        assert len(statements) == 2 and "replacement_model_id" in statements[1]
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
        catalog_cache.forget("gpt-5")


# --- the public lists ----------------------------------------------------------------------------


def test_issue11_item7_a_retired_model_leaves_the_model_list_and_the_pricing_page(
    app, client, synced
):
    listed = {m["id"]: m for m in client.get("/v1/models").get_json()["data"]}
    assert listed["gpt-5"]["status"] == "deprecated"
    assert "<code>gpt-5</code>" in client.get("/pricing?q=gpt-5").get_data(as_text=True)
    assert client.get("/models/gpt-5").status_code == 200
    retire_due_models(date(2026, 12, 11))
    db.session.commit()
    listed = {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    assert not listed & set(DUE_2026_12_11)
    assert "gpt-4o" in listed and "gpt-6.1-sol" in listed
    page = client.get("/pricing").get_data(as_text=True)
    for model_id in DUE_2026_12_11:
        assert f"<code>{model_id}</code>" not in page, model_id
        # Its page says it is gone, since when, and what replaces it.
        response = client.get(f"/models/{model_id}")
        assert response.status_code == 404, model_id
        gone = response.get_data(as_text=True)
        assert "was retired by its provider on 2026-12-11" in gone, model_id
        assert 'id="model-replacement"' in gone, model_id
    gone = client.get("/models/gpt-5").get_data(as_text=True)
    assert 'href="/models/gpt-6.1-sol"' in gone
    assert "<code>gpt-4o</code>" in page
    assert "Retires 2027-01-14; use gpt-6-luna" in page


# --- who runs it: the cron scheduler and `flask catalog sync` ------------------------------------


def test_issue11_item7_the_scheduler_runs_the_retirement_every_ten_minutes(app):
    from rq.cron import CronScheduler

    from worker import register_cron_jobs

    scheduler = CronScheduler(connection=app.extensions["onekey_redis"])
    register_cron_jobs(scheduler)
    jobs = {job.func.__name__: job for job in scheduler.get_jobs()}
    job = jobs["retire_due_models_job"]
    assert (job.interval, job.queue_name) == (600, "default")
    assert job.func.__module__ == "app.tasks.maintenance"


def test_issue11_item7_the_job_retires_by_the_utc_date_and_commits(app, synced, monkeypatch):
    from app.tasks import maintenance

    clock = {"now": datetime(2026, 12, 10, 23, 59, 59, tzinfo=UTC)}
    monkeypatch.setattr(maintenance, "utcnow", lambda: clock["now"])
    assert maintenance.retire_due_models_job() == []
    clock["now"] = datetime(2026, 12, 11, 0, 0, 1, tzinfo=UTC)
    assert maintenance.retire_due_models_job() == DUE_2026_12_11
    assert maintenance.retire_due_models_job() == []
    db.session.remove()
    # Committed: a connection of its own sees it.
    with db.engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT model_id, status FROM catalog_models")).all())
    assert {statuses[m] for m in DUE_2026_12_11} == {"retired"}
    assert statuses["gpt-4o"] == "deprecated"


@pytest.fixture
def flask_cli(runner, monkeypatch):
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    group = FlaskGroup(
        create_app=lambda: runner.app,
        add_default_commands=False,
        load_dotenv=False,
        set_debug_flag=False,
    )
    return lambda *args: runner.invoke(cli=group, args=list(args))


def test_issue11_item7_catalog_sync_retires_what_is_due_and_says_so(app, flask_cli):
    count = len(bundled())
    first = flask_cli("catalog", "sync", "--today", "2026-12-11")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"catalogue synced: {count} added, 0 updated, 0 unchanged\n"
    retired_lines = [line for line in first.stderr.splitlines() if "retired on its date" in line]
    assert retired_lines == [
        "retired on its date 2026-12-11; use gpt-6.1-sol (disabled, not sold): gpt-5",
        "retired on its date 2026-12-11; use gpt-6.1-terra (disabled, not sold): gpt-5-mini",
        "retired on its date 2026-12-11; use gpt-6-luna (disabled, not sold): gpt-5-nano",
        "retired on its date 2026-12-11; use gpt-6.1-sol (disabled, not sold): o3",
    ]
    with app.app_context():
        assert {state()[m][:2] for m in DUE_2026_12_11} == {("retired", False)}
    again = flask_cli("catalog", "sync", "--today", "2026-12-11")
    assert again.exit_code == 0, again.output
    assert again.stdout == f"catalogue synced: 0 added, 0 updated, {count} unchanged\n"
    assert again.stderr == ""
    early = flask_cli("catalog", "sync", "--today", "2026-12-10")
    assert early.exit_code == 0 and early.stderr == ""


def test_issue11_item7_catalog_sync_uses_todays_utc_date_by_default(app, flask_cli, monkeypatch):
    import app.cli as cli

    monkeypatch.setattr(cli, "utcnow", lambda: datetime(2026, 12, 10, 12, 0, tzinfo=UTC))
    assert flask_cli("catalog", "sync").stderr.count("retired on its date") == 0
    monkeypatch.setattr(cli, "utcnow", lambda: datetime(2027, 1, 14, 0, 30, tzinfo=UTC))
    result = flask_cli("catalog", "sync")
    assert result.exit_code == 0, result.output
    assert [line.rsplit(": ", 1)[1] for line in result.stderr.splitlines()] == sorted(
        DUE_2026_12_11 + DUE_2027_01_14
    )
    assert flask_cli("catalog", "sync", "--today", "yesterday").exit_code != 0
