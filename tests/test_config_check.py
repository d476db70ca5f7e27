"""`make config-check`: every service of an environment reached, each failure named by node and endpoint."""

from resources.config_check import check_environment, main


def test_local_environment_is_all_reachable(seeded):  # the OLTP's roles are made with its schema
    results = {c.resource: c for c in check_environment("local")}
    assert set(results) == {"oltp", "oltp_capture", "object_store", "spark", "clickhouse"}  # each OLTP role too
    assert all(c.ok for c in results.values()), [c.detail for c in results.values() if not c.ok]
    assert results["clickhouse"].node == "vps_3" and results["spark"].node == "vps_2"


def test_down_service_and_missing_secret_are_reported(stack, monkeypatch, capsys):
    monkeypatch.setenv("OLTP_PORT", "1")  # nothing listens there
    monkeypatch.delenv("S3_SECRET_ACCESS_KEY")
    results = {c.resource: c for c in check_environment("local")}
    assert results["oltp"].detail.startswith(
        "oltp-postgres on vps_1 is unreachable or misconfigured at postgresql://platform_extract@127.0.0.1:1/tpch"
    )
    assert "postgresql://platform_capture@127.0.0.1:1/tpch" in results["oltp_capture"].detail
    assert results["object_store"].detail == (
        "object_store on vps_1 is misconfigured: environment variable S3_SECRET_ACCESS_KEY is not set"
    )
    assert not any(results[r].ok for r in ("oltp", "oltp_capture", "object_store", "spark"))
    assert results["clickhouse"].ok
    assert main(["local"]) == 1
    assert "local: 4 service(s) failing" in capsys.readouterr().out
