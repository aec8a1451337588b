"""`nexml dashboards` as a real process: sign-in, sessions, per-person kernels, the lockdown.

Everything goes over 127.0.0.1 to the server the CLI starts, with a tiny dashboard that prints
who its kernel acts as. The browser's view of the same server is in test_browser_serving.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.dashboards.conftest import kernel_id_of, sign_in, ws_message, xsrf_of


def cookie_header(client) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


def test_nothing_is_reachable_without_signing_in(dashboards_server):
    kernel = str(uuid.uuid4())
    with dashboards_server.client() as client:
        for path in ("/", "/dashboards/whoami", "/dashboards/nope"):
            r = client.get(path)
            assert r.status_code == 302, path
            assert r.headers["location"].startswith("/login?next="), path
        assert client.get(f"/api/kernels/{kernel}").status_code == 403
        assert client.get("/voila/render/whoami.ipynb").status_code in (302, 403, 404)
        assert client.get("/voila/tree").status_code in (302, 403, 404)
        form = client.get("/login")
        r = client.post(f"/voila/api/shutdown/{kernel}", headers={"X-XSRFToken": xsrf_of(form.text)})
        assert r.status_code == 403
        # A forged cookie (not signed by this server) is no session either.
        client.cookies.set("nexml-dashboards", "nxm_0123456789abcdef_" + "A" * 43)
        assert client.get("/").status_code == 302


def test_a_wrong_token_is_refused_on_the_login_page(dashboards_server, people):
    with dashboards_server.client() as client:
        r = sign_in(client, "nxm_0123456789abcdef_" + "A" * 43)
        assert r.status_code == 403
        assert "Sign-in refused: token refused: unknown token." in r.text
        r = sign_in(client, "<script>alert(1)</script>")
        assert r.status_code == 403
        assert "<script>alert(1)</script>" not in r.text  # escaped
        assert "it is not an nexml token" in r.text
        assert "nexml-dashboards" not in client.cookies
        assert client.get("/").status_code == 302


def test_sign_in_mints_an_audited_session_and_the_kernel_acts_as_that_person(
    dashboards_server, people
):
    admin = people.admin
    before = {t.id for t in admin.tokens("mark")}
    with dashboards_server.client() as client:
        r = sign_in(client, people.tokens["mark"], "/dashboards/whoami")
        assert r.status_code == 302 and r.headers["location"] == "/dashboards/whoami"
        cookie = next(v for k, v in r.headers.multi_items()
                      if k == "set-cookie" and v.startswith("nexml-dashboards="))
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "expires", "path"} <= attributes
        assert "samesite=strict" in cookie.lower()
        # The cookie holds a new session token of mark's, not the token he typed.
        sessions = [t for t in admin.tokens("mark") if t.id not in before]
        assert [t.label for t in sessions] == ["dashboard session"]
        assert sessions[0].expires_at is not None and sessions[0].revoked_at is None
        events = admin.audit.log(action="token.create")
        assert any(e.object_ref == f"token:{sessions[0].id}" for e in events)

        index = client.get("/")
        assert index.status_code == 200
        assert "Signed in as mark (manager)." in index.text
        assert 'href="/dashboards/whoami"' in index.text

        page = client.get("/dashboards/whoami")
        assert page.status_code == 200
        assert "acting as mark (manager)" in page.text
        assert "show(" not in page.text  # sources are stripped
        assert client.get("/dashboards/nope").status_code == 404


def _exchange(base: str, cookie: str, kernel_id: str, messages: list[dict],
              until: str, seconds: float = 60) -> list[dict]:
    """Open the kernel's websocket as the cookie's owner, send ``messages``, and collect what
    comes back until a reply of type ``until`` arrives."""

    async def run() -> list[dict]:
        url = base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?session_id=t"
        request = HTTPRequest(url, headers={"Cookie": cookie, "Origin": base})
        conn = await websocket_connect(request)
        try:
            for message in messages:
                await conn.write_message(json.dumps(message))
            received: list[dict] = []
            while True:
                raw = await asyncio.wait_for(conn.read_message(), seconds)
                assert raw is not None, "the server closed the socket"
                msg = json.loads(raw)
                received.append(msg)
                if msg["header"]["msg_type"] == until:
                    return received
        finally:
            conn.close()

    return asyncio.run(run())


def test_the_browser_cannot_execute_code_in_a_dashboard_kernel(dashboards_server, people,
                                                                tmp_path):
    proof = tmp_path / "executed.txt"
    with dashboards_server.client() as client:
        sign_in(client, people.tokens["mark"])
        kernel_id = kernel_id_of(client.get("/dashboards/whoami").text)
        cookie = cookie_header(client)
        session = uuid.uuid4().hex
        execute = ws_message("execute_request", {
            "code": f"open({str(proof)!r}, 'w').write('ran')", "silent": False,
            "store_history": False, "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True}, session)
        inspect = ws_message("inspect_request", {"code": "open", "cursor_pos": 4,
                                                 "detail_level": 1}, session)
        control = dict(ws_message("shutdown_request", {"restart": False}, session),
                       channel="control")
        info = ws_message("kernel_info_request", {}, session)
        # The shell channel is served in order: by the time kernel_info is answered, an
        # execute_request that reached the kernel would have run.
        replies = _exchange(dashboards_server.base, cookie, kernel_id,
                            [execute, inspect, control, info], until="kernel_info_reply")
        types = {m["header"]["msg_type"] for m in replies}
        assert "execute_reply" not in types and "inspect_reply" not in types
        assert replies[-1]["parent_header"]["msg_id"] == info["header"]["msg_id"]
        assert not proof.exists()
        # The kernel is still alive (the control-channel shutdown was dropped too).
        again = _exchange(dashboards_server.base, cookie, kernel_id,
                          [ws_message("kernel_info_request", {}, session)],
                          until="kernel_info_reply")
        assert again[-1]["content"]["status"] == "ok"
    log = dashboards_server.log.read_text()
    assert "dropped a 'execute_request' message on channel 'shell'" in log
    assert "dropped a 'shutdown_request' message on channel 'control'" in log


def test_a_person_reaches_only_their_own_kernels(dashboards_server, people):
    with dashboards_server.client() as mark, dashboards_server.client() as dave:
        sign_in(mark, people.tokens["mark"])
        sign_in(dave, people.tokens["dave"])
        kernel_id = kernel_id_of(mark.get("/dashboards/whoami").text)
        assert "acting as dave (data_scientist)" in dave.get("/dashboards/whoami").text
        assert mark.get(f"/api/kernels/{kernel_id}").status_code == 200
        assert dave.get(f"/api/kernels/{kernel_id}").status_code == 403
        assert dave.delete(f"/api/kernels/{kernel_id}").status_code == 403
        with pytest.raises(HTTPClientError) as refused:
            _exchange(dashboards_server.base, cookie_header(dave), kernel_id,
                      [ws_message("kernel_info_request", {}, "x")], until="kernel_info_reply")
        assert refused.value.code == 403
        xsrf = dave.cookies.get("_xsrf")
        r = dave.post(f"/voila/api/shutdown/{kernel_id}", headers={"X-XSRFToken": xsrf})
        assert r.status_code == 403
        assert mark.get(f"/api/kernels/{kernel_id}").status_code == 200  # still running


def test_sign_out_revokes_the_session_and_ends_the_persons_kernels(dashboards_server, people):
    before = {t.id for t in people.admin.tokens("cora")}
    with dashboards_server.client() as client:
        sign_in(client, people.tokens["cora"])
        kernel_id = kernel_id_of(client.get("/dashboards/whoami").text)
        old_cookie = client.cookies.get("nexml-dashboards")
        index = client.get("/")
        r = client.post("/logout", data={"_xsrf": xsrf_of(index.text)})
        assert r.status_code == 302 and r.headers["location"] == "/login"
        assert client.get("/").status_code == 302
        # The old cookie, replayed, is a revoked session: nothing opens with it.
        client.cookies.set("nexml-dashboards", old_cookie)
        assert client.get("/").status_code == 302
        assert client.get(f"/api/kernels/{kernel_id}").status_code == 403
    sessions = [t for t in people.admin.tokens("cora") if t.id not in before]
    assert [t.label for t in sessions] == ["dashboard session"]
    assert sessions[0].revoked_at is not None
    events = people.admin.audit.log(action="token.revoke")
    assert any(e.object_ref == f"token:{sessions[0].id}" for e in events)
    assert f"Kernel shutdown: {kernel_id}" in dashboards_server.log.read_text()


def test_the_cli_refuses_an_uninitialised_store(tmp_path, monkeypatch, capsys):
    from nexml_ext.cli import main

    for name in ("NEXML_TOKEN", "NEXML_DATABASE_URL", "NEXML_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--home", str(tmp_path / "none"), "dashboards", "--no-browser",
              "--notebooks", str(tmp_path)])
    assert exit_.value.code == 11  # not initialised
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nexml init" in err and len(err.splitlines()) == 1


def test_in_chromium_a_person_signs_in_and_uses_a_dashboard_as_themselves(
    dashboards_server, people, browser
):
    from tests.dashboards.conftest import Person

    dave = Person(browser, dashboards_server.base)
    log_before = len(dashboards_server.log.read_text())
    try:
        dave.page.goto(dashboards_server.base + "/dashboards/whoami")
        assert "/login" in dave.page.url
        dave.page.fill("#token", "nxm_0123456789abcdef_" + "B" * 43)
        dave.page.click("button.nexml-sign-in")
        assert "token refused: unknown token" in dave.page.inner_text(".nexml-refused")
        # The refusal is a 403 page (the browser logs that status); from here on, clean.
        dave.console_errors.clear()
        dave.page.fill("#token", people.tokens["dave"])
        dave.page.click("button.nexml-sign-in")
        dave.page.wait_for_selector(".nexml-whoami-principal", timeout=120_000)
        assert dave.page.url == dashboards_server.base + "/dashboards/whoami"
        assert dave.page.inner_text(".nexml-whoami-principal") == (
            "principal: dave (data_scientist)")
        # A click travels to the kernel as a comm message, and the kernel answers.
        dave.page.click("button.nexml-whoami-ping")
        dave.page.wait_for_function(
            "document.querySelector('.nexml-whoami-answer').innerText.includes('pong')")
        assert dave.page.inner_text(".nexml-whoami-answer") == "pong from dave"
        # The session cookie is out of the page's reach.
        assert "nexml-dashboards" not in dave.page.evaluate("document.cookie")
        cookie = next(c for c in dave.context.cookies() if c["name"] == "nexml-dashboards")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        dave.screenshot("dashboards-whoami.png")
        dave.page.goto(dashboards_server.base + "/")
        assert dave.page.inner_text(".nexml-signed-in") == "Signed in as dave (data_scientist)."
        dave.page.click("button.nexml-sign-out")
        dave.page.wait_for_url("**/login")
        dave.page.goto(dashboards_server.base + "/")
        assert "/login" in dave.page.url
        dave.assert_clean()
        # A real page sends its kernel only what the lockdown lets through.
        assert "dropped" not in dashboards_server.log.read_text()[log_before:]
    finally:
        dave.close()
