"""The named-log HTTP API: contract, redirects, standby reads and every kind of bad input."""

import base64

import aiohttp
import pytest

from mesos_es import __version__
from mesos_es.master.http import logs as logs_api
from tests.support.inprocess import InProcessMasters

LEADER, STANDBY = 0, 1


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, max_entry_bytes=1024).start()
    for context in masters.contexts:  # no MasterElected racing the appends for position 1
        await context.leader_shell.stop()
    masters.elect(LEADER)
    yield masters
    await masters.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http, method, url, expect, **kwargs):
    async with http.request(method, url, allow_redirects=False, **kwargs) as response:
        body = await response.json(content_type=None)
        assert response.status == expect, body
        return body, response.headers


async def append(http, masters, data, name="aurora", key=None, index=LEADER):
    headers = {"Idempotency-Key": key} if key else {}
    body, _ = await call(http, "POST", masters.url(index, f"/api/v1/logs/{name}/entries"), 200,
                         data=data, headers=headers)
    return body


async def test_appends_answer_their_position_once_committed_and_read_back(masters, http):
    assert (await append(http, masters, b"one"))["position"] == 1
    second = await append(http, masters, b"\x00\xfftwo")
    assert second["position"] == 2 and second["duplicate"] is False
    assert second["applied_position"] == 2
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries"), 200)
    assert [base64.b64decode(e["data"]) for e in body["entries"]] == [b"one", b"\x00\xfftwo"]
    assert [e["position"] for e in body["entries"]] == [1, 2]
    assert (body["beginning"], body["ending"], body["leader"]) == (1, 2, masters.addresses[LEADER])


async def test_each_named_log_has_its_own_positions(masters, http):
    await append(http, masters, b"a1", name="a")
    await append(http, masters, b"b1", name="b")
    assert (await append(http, masters, b"a2", name="a"))["position"] == 2
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs"), 200)
    assert body["logs"] == [{"name": "a", "beginning": 1, "ending": 2}, {"name": "b", "beginning": 1, "ending": 1}]
    assert body["applied_position"] == 3


async def test_a_retried_append_with_the_same_key_is_not_written_twice(masters, http):
    first = await append(http, masters, b"x", key="request-1")
    again = await append(http, masters, b"x", key="request-1")
    assert again["position"] == first["position"] and again["duplicate"] is True
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora"), 200)
    assert body["ending"] == 1


async def test_a_standby_redirects_writes_to_the_leader(masters, http):
    body, headers = await call(http, "POST", masters.url(STANDBY, "/api/v1/logs/aurora/entries"), 307, data=b"x")
    assert headers["Location"] == masters.url(LEADER, "/api/v1/logs/aurora/entries")
    assert body["leader"] == masters.addresses[LEADER]
    _, headers = await call(http, "POST", masters.url(STANDBY, "/api/v1/logs/aurora/truncate"), 307, json={"to": 1})
    assert headers["Location"].startswith(masters.url(LEADER))


async def test_a_standby_serves_reads_from_its_own_state_and_says_how_fresh(masters, http):
    await append(http, masters, b"x")
    body, _ = await call(http, "GET", masters.url(STANDBY, "/api/v1/logs/aurora/entries"), 200)
    assert body["applied_position"] == 1 and body["leader"] == masters.addresses[LEADER]
    assert base64.b64decode(body["entries"][0]["data"]) == b"x"
    body, _ = await call(http, "GET", masters.url(STANDBY, "/api/v1/logs/aurora"), 200)
    assert (body["ending"], body["applied_position"]) == (1, 1)


async def test_a_stale_standby_answers_with_its_older_position(masters, http):
    await append(http, masters, b"x")
    standby = masters.contexts[STANDBY].log
    standby._closed = True  # stops following the log
    await append(http, masters, b"y")
    body, _ = await call(http, "GET", masters.url(STANDBY, "/api/v1/logs/aurora/entries"), 200)
    assert body["applied_position"] == 1 and len(body["entries"]) == 1
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries"), 200)
    assert body["applied_position"] == 2 and len(body["entries"]) == 2


async def test_strong_reads_go_to_the_leader(masters, http):
    await append(http, masters, b"x")
    _, headers = await call(http, "GET", masters.url(STANDBY, "/api/v1/logs/aurora/entries?consistency=strong"), 307)
    assert headers["Location"] == masters.url(LEADER, "/api/v1/logs/aurora/entries?consistency=strong")
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries?consistency=strong"), 200)
    assert len(body["entries"]) == 1


async def test_without_a_leader_writes_are_refused_with_retry_after(masters, http):
    masters.cluster.leader = None
    body, headers = await call(http, "POST", masters.url(STANDBY, "/api/v1/logs/aurora/entries"), 503, data=b"x")
    assert headers["Retry-After"] == "1" and body["leader"] is None


async def test_truncation_hides_earlier_entries(masters, http):
    for i in range(5):
        await append(http, masters, b"%d" % i)
    body, _ = await call(http, "POST", masters.url(LEADER, "/api/v1/logs/aurora/truncate"), 200, json={"to": 4})
    assert (body["beginning"], body["ending"]) == (4, 5)
    body, _ = await call(http, "GET", masters.url(STANDBY, "/api/v1/logs/aurora/entries"), 200)
    assert [e["position"] for e in body["entries"]] == [4, 5]
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries?from=2"), 410)
    assert body["beginning"] == 4
    # truncating again below the beginning changes nothing
    body, _ = await call(http, "POST", masters.url(LEADER, "/api/v1/logs/aurora/truncate"), 200, json={"to": 2})
    assert body["beginning"] == 4


async def test_reads_page_by_limit_and_by_size(masters, http, monkeypatch):
    for i in range(6):
        await append(http, masters, b"%d" % i * 100)
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries?from=2&limit=3"), 200)
    assert [e["position"] for e in body["entries"]] == [2, 3, 4]
    monkeypatch.setattr(logs_api, "MAX_READ_BYTES", 250)
    body, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/logs/aurora/entries"), 200)
    assert [e["position"] for e in body["entries"]] == [1, 2]


async def test_version_health_and_digest(masters, http):
    body, _ = await call(http, "GET", masters.url(STANDBY, "/version"), 200)
    assert body == {"version": __version__}
    assert all(part.isdigit() for part in body["version"].split("."))
    body, _ = await call(http, "GET", masters.url(STANDBY, "/health"), 200)
    assert body["role"] == "follower" and body["leader"] == masters.addresses[LEADER]
    await append(http, masters, b"x")
    leader, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/digest"), 200)
    standby, _ = await call(http, "GET", masters.url(STANDBY, "/api/v1/digest"), 200)
    assert leader == standby and leader["position"] == 1 and len(leader["digest"]) == 64


BAD_REQUESTS = [
    ("POST", "/api/v1/logs/bad%20name/entries", {"data": b"x"}, 400, "invalid log name"),
    ("POST", "/api/v1/logs/aurora/entries", {"data": b"x" * 2000}, 413, "exceeds"),
    ("POST", "/api/v1/logs/aurora/entries", {"data": b"x" * 100_000}, 413, "Maximum request body size"),
    ("POST", "/api/v1/logs/aurora/entries", {"data": b"x", "headers": {"Idempotency-Key": "k" * 200}}, 400, "idempotency key"),
    ("GET", "/api/v1/logs/nope", {}, 404, "unknown log"),
    ("GET", "/api/v1/logs/nope/entries", {}, 404, "unknown log"),
    ("GET", "/api/v1/logs/aurora/entries?from=abc", {}, 400, "non-negative integer"),
    ("GET", "/api/v1/logs/aurora/entries?from=-1", {}, 400, "non-negative integer"),
    ("GET", "/api/v1/logs/aurora/entries?from=1&to=1e3", {}, 400, "non-negative integer"),
    ("GET", "/api/v1/logs/aurora/entries?from=0", {}, 400, "start at 1"),
    ("GET", "/api/v1/logs/aurora/entries?from=9", {}, 416, "beyond the end"),
    ("GET", "/api/v1/logs/aurora/entries?from=2&to=0", {}, 400, "before"),
    ("GET", "/api/v1/logs/aurora/entries?limit=99999", {}, 400, "limit"),
    ("GET", "/api/v1/logs/aurora/entries?consistency=linearizable", {}, 400, "consistency"),
    ("POST", "/api/v1/logs/aurora/truncate", {"data": b"{not json"}, 400, "malformed JSON"),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": {"too": 1}}, 400, '{"to": N}'),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": {"to": "1"}}, 400, '{"to": N}'),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": {"to": 0}}, 400, '{"to": N}'),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": {"to": True}}, 400, '{"to": N}'),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": [1]}, 400, '{"to": N}'),
    ("POST", "/api/v1/logs/aurora/truncate", {"json": {"to": 9}}, 400, "it ends at 2"),
    ("POST", "/api/v1/logs/nope/truncate", {"json": {"to": 1}}, 404, "unknown log"),
    ("PUT", "/api/v1/logs/aurora/entries", {"data": b"x"}, 405, "Method Not Allowed"),
    ("GET", "/api/v1/nothing-here", {}, 404, "Not Found"),
]


@pytest.mark.parametrize("method,path,kwargs,status,message", BAD_REQUESTS)
async def test_bad_input_gets_a_clear_json_error_and_changes_nothing(masters, http, method, path, kwargs, status, message):
    await append(http, masters, b"one")
    await append(http, masters, b"two")
    before, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/digest"), 200)
    body, _ = await call(http, method, masters.url(LEADER, path), status, **kwargs)
    assert message in body["error"]
    after, _ = await call(http, "GET", masters.url(LEADER, "/api/v1/digest"), 200)
    assert after == before
