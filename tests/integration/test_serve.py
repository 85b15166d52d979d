"""`synthlake serve` over real HTTP: a uvicorn server in a subprocess, champions from a real MLflow registry.

No Spark: the module registers tiny Gaussian copulas (fitted on a few hundred Adult rows, with an identifier and
a datetime column added) in a throwaway project's SQLite store, as the train and publish stages would. The
server serves every dataset config of the project: `adult` (a champion from the start) and `pending` (none
until a test registers one), checks the aliases on every request (--reload-interval 0) and records its
modules at exit, so the last test can check it never imported torch or pyspark.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from champion_fixture import register, write_config
from project_fixture import VENV_BIN, free_port, make_project, project_env

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = 30  # seconds, every request
TYPES = ("application/json", "application/x-ndjson", "text/csv", "application/vnd.apache.arrow.stream",
         "application/vnd.apache.parquet")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("serve"))
    adult = (root / "conf/datasets/adult.yaml").read_text()
    (root / "conf/datasets/pending.yaml").write_text(adult.replace("name: adult", "name: pending"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        register(root, "adult", start=0)
        write_config(root, "conditional")
        register(root, "conditional", start=0, generator="tabular_ar", epochs=2, hidden_dim=16)
        yield root


# ---- the server ---------------------------------------------------------------------------------------
def wait_for(url: str, proc: subprocess.Popen | None = None, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {deadline_s} s")


SERVER_CODE = """import atexit, sys
atexit.register(lambda: print("MODULES", " ".join(sorted(sys.modules)), flush=True))
from jobs.cli import main
sys.exit(main(["serve", "--port", sys.argv[1], "--reload-interval", "0"]))
"""


@pytest.fixture(scope="module")
def server(project):
    """`synthlake serve` (every dataset config, default host and limits) through jobs.cli.main."""
    port, out, err = free_port(), project / "server.out", project / "server.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(port)], cwd=project, stdout=stdout,
                                stderr=stderr, env=project_env(project, SYNTHLAKE_SERVE_TOKENS=f"other,{TOKEN}"))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", proc)
        yield {"base": base, "proc": proc, "out": out, "err": err}
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server["base"], headers=AUTH, timeout=TIMEOUT) as c:
        yield c


def rows(client, dataset="adult", accept="application/json", **body) -> httpx.Response:
    return client.post(f"/v1/datasets/{dataset}/rows", json=body, headers={"Accept": accept})


# ---- parsing each format back ---------------------------------------------------------------------------
def from_json_rows(records: list[dict], schema: pa.Schema) -> pa.Table:
    """JSON rows as Arrow: ISO timestamps parsed, then every column cast to the served schema."""
    for r in records:
        r["seen_at"] = None if r["seen_at"] is None else dt.datetime.fromisoformat(r["seen_at"])
    return pa.Table.from_pylist(records).select(schema.names).cast(schema)


def parse(response: httpx.Response, schema: pa.Schema) -> pa.Table:
    kind, data = response.headers["content-type"].split(";")[0], response.content
    if kind == "application/json":
        return from_json_rows(response.json(), schema)
    if kind == "application/x-ndjson":
        return from_json_rows([json.loads(line) for line in data.decode().splitlines()], schema)
    if kind == "text/csv":
        options = pacsv.ConvertOptions(column_types=schema, strings_can_be_null=True)
        return pacsv.read_csv(io.BytesIO(data), convert_options=options)
    if kind == "application/vnd.apache.parquet":
        return pq.read_table(io.BytesIO(data))
    return pa.ipc.open_stream(data).read_all()


# ---- the tests -------------------------------------------------------------------------------------------
def test_every_format_carries_the_champions_rows(client):
    from pipelines import tracking

    first = rows(client, accept=TYPES[-2], rows=200, seed=3, offset=1000)
    assert first.status_code == 200, first.text
    version = first.headers["x-synthlake-model-version"]
    expected = tracking.registered_sampler("synthlake-adult", version).sample_arrow(200, seed=3, row_offset=1000)
    for media in TYPES:
        response = rows(client, accept=media, rows=200, seed=3, offset=1000)
        assert response.status_code == 200 and response.headers["content-type"].startswith(media), response.text
        assert parse(response, expected.schema).equals(expected), media
    records = rows(client, rows=200, seed=3, offset=1000).json()
    assert any(v is None for r in records for v in r.values())  # nulls are JSON nulls
    assert "T" in records[0]["seen_at"] and records[0]["id"] == "1000"
    streamed = rows(client, accept="application/x-ndjson", rows=2500, seed=3)
    assert streamed.headers.get("transfer-encoding") == "chunked" and len(streamed.text.splitlines()) == 2500


def test_rows_are_deterministic_for_seed_and_offset(client):
    a, b = (rows(client, accept="text/csv", rows=50, seed=7, offset=40) for _ in range(2))
    assert a.content == b.content
    assert a.headers["x-synthlake-seed"] == "7" and a.headers["x-synthlake-offset"] == "40"
    assert rows(client, accept="text/csv", rows=50, seed=8, offset=40).content != a.content
    assert [r["id"] for r in rows(client, rows=3, seed=7, offset=40).json()] == ["40", "41", "42"]
    assert rows(client, rows=0).json() == []


def test_identifiers_continue_across_requests(client):
    first = rows(client, rows=5, seed=1)
    start = int(first.headers["x-synthlake-offset"])
    assert [r["id"] for r in first.json()] == [str(i) for i in range(start, start + 5)]
    second = rows(client, rows=3, seed=1)
    assert second.headers["x-synthlake-offset"] == str(start + 5)
    with ThreadPoolExecutor(8) as pool:  # concurrent requests get disjoint identifiers
        offsets = sorted(int(r.headers["x-synthlake-offset"]) for r in pool.map(lambda _: rows(client, rows=4),
                                                                                  range(8)))
    assert offsets == list(range(start + 8, start + 8 + 32, 4))


def test_a_bearer_token_is_required(server):
    url = f"{server['base']}/v1/datasets/adult/rows"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.post(url, json={"rows": 1}, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401 and response.json()["field"] == "Authorization"
        assert response.headers["www-authenticate"] == "Bearer"
    ok = httpx.post(url, json={"rows": 1}, headers={"Authorization": "Bearer other"}, timeout=TIMEOUT)
    assert ok.status_code == 200
    assert httpx.get(f"{server['base']}/healthz", timeout=TIMEOUT).status_code == 200  # probes need none


def test_errors_name_what_is_wrong(client):
    unknown = rows(client, dataset="nope", rows=1)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"] and unknown.json()["field"] == "name"
    for bad in (100_001, -1, "3"):
        response = rows(client, rows=bad)
        assert response.status_code == 422 and response.json()["field"] == "rows", response.text
    extra = rows(client, rows=1, sample=True)
    assert extra.status_code == 422 and extra.json()["field"] == "sample"
    missing = rows(client, seed=1)
    assert missing.status_code == 422 and missing.json()["field"] == "rows"
    malformed = client.post("/v1/datasets/adult/rows", content=b'{"rows": 3,',
                            headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
    refused = rows(client, accept="image/png", rows=1)
    assert refused.status_code == 406 and all(t in refused.json()["error"] for t in TYPES)


def test_readyz_names_a_dataset_without_champion_until_it_has_one(client, project):
    assert rows(client, rows=1).status_code == 200  # adult's champion is loaded
    waiting = client.get("/readyz")
    assert waiting.status_code == 503 and "pending" in waiting.json()["error"]
    assert list(waiting.json()["not_ready"]) == ["pending"]
    assert rows(client, dataset="pending", rows=1).status_code == 503
    version = register(project, "pending", start=300)
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["versions"]["pending"] == version
    assert rows(client, dataset="pending", rows=2).headers["x-synthlake-model-version"] == version


def test_a_moved_champion_alias_is_served(client, project):
    before = rows(client, accept="text/csv", rows=20, seed=5, offset=0)
    version = register(project, "adult", start=600)
    assert version != before.headers["x-synthlake-model-version"]
    after = rows(client, accept="text/csv", rows=20, seed=5, offset=0)
    assert after.headers["x-synthlake-model-version"] == version
    assert after.content != before.content


def test_request_ids_and_openapi(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "not an id; <script>"}).headers["x-request-id"]
    assert len(generated) == 32 and generated != client.get("/healthz").headers["x-request-id"]
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/datasets/{name}/rows"]["post"]
    assert operation["summary"] and "bearer" in json.dumps(spec).lower()
    body = spec["components"]["schemas"]["RowsRequest"]
    assert {"rows", "seed", "offset"} <= set(body["properties"])
    assert all(p.get("description") for p in body["properties"].values())
    assert body["properties"]["rows"]["maximum"] == 100_000
    assert client.get("/docs").status_code == 200


def test_without_tokens_only_loopback_serves(project):
    from pipelines.config import load_env
    from serving.app import create_app

    refused = subprocess.run([str(VENV_BIN / "synthlake"), "serve", "--host", "0.0.0.0"], cwd=project,
                             env=project_env(project), capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode == 2 and "SYNTHLAKE_SERVE_TOKENS" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    import uvicorn

    port = free_port()
    app = create_app(load_env("local"), ["adult"], tokens=(), max_rows=10, reload_s=5)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz")
        url = f"http://127.0.0.1:{port}/v1/datasets/adult/rows"
        assert httpx.post(url, json={"rows": 10}, timeout=TIMEOUT).status_code == 200
        too_many = httpx.post(url, json={"rows": 11}, timeout=TIMEOUT)
        assert too_many.status_code == 422 and too_many.json()["field"] == "rows"
    finally:
        server.should_exit = True
        thread.join(timeout=TIMEOUT)


def test_where_and_seed_rows_give_rows_that_meet_them(client):
    """A tabular_ar champion meets a condition and keeps seed values; every row, by construction."""
    records = rows(client, dataset="conditional", rows=300, seed=2, where="age >= 50 AND sex = 'Female'").json()
    assert len(records) == 300 and all(r["age"] >= 50 and r["sex"] == "Female" for r in records)
    seeds = [{"age": 30, "education": "Masters"}, {"age": 71, "education": "HS-grad"}]
    kept = rows(client, dataset="conditional", rows=2, seed_rows=seeds).json()
    assert [(r["age"], r["education"]) for r in kept] == [(30, "Masters"), (71, "HS-grad")]


@pytest.mark.parametrize("dataset, body, field, message", [
    ("conditional", {"rows": 5, "where": "agee > 3"}, "where", "no column 'agee'"),
    ("conditional", {"rows": 3, "seed_rows": [{"age": 30}]}, "seed_rows", "one row each"),
    ("conditional", {"rows": 1, "seed_rows": [{"sex": "Other"}]}, "seed_rows", "column 'sex'"),
    ("adult", {"rows": 5, "where": "age > 30"}, "where", "cannot meet conditions"),
])
def test_conditions_that_cannot_be_met_are_a_422_naming_the_field(client, dataset, body, field, message):
    response = rows(client, dataset=dataset, **body)
    assert response.status_code == 422
    assert response.json()["field"] == field and message in response.json()["error"]


def test_the_server_logs_json_lines_and_never_imports_torch_or_spark(server, client):
    for dataset, request_id in (("adult", "served-one"), ("nope", "refused-one")):
        client.post(f"/v1/datasets/{dataset}/rows", json={"rows": 2}, headers={"X-Request-ID": request_id})
    server["proc"].terminate()  # uvicorn shuts down gracefully; atexit prints the modules
    assert server["proc"].wait(timeout=TIMEOUT) == 0
    modules = next(line for line in server["out"].read_text().splitlines() if line.startswith("MODULES")).split()
    assert "fastapi" in modules and "mlflow" in modules and "synthlake.generators.gaussian_copula" in modules
    loaded = {m.split(".")[0] for m in modules}
    assert not loaded & {"torch", "pyspark", "py4j"}, sorted(loaded & {"torch", "pyspark", "py4j"})
    access = [json.loads(line) for line in server["err"].read_text().splitlines() if line.startswith("{")]
    served, refused = (next(e for e in access if e["request_id"] == i) for i in ("served-one", "refused-one"))
    assert served == {**served, "method": "POST", "path": "/v1/datasets/adult/rows", "status": 200, "rows": 2}
    assert refused == {**refused, "path": "/v1/datasets/nope/rows", "status": 404, "rows": None}
    assert served["ms"] > 0

