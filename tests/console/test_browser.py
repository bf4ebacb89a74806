"""The console in a real browser (headless Chromium via Selenium) against the real API server and PostgreSQL:
signing in and out, registering by .torrent upload and by a bulk list with a bad line, tenant isolation
(also by typing URLs), CSRF rejection, an ISP acknowledging a notice and an operator voiding a strike.

Screenshots go to $TRACKER_WATCH_SCREENSHOTS when set (the README's come from `docs/console`), else to a
temporary folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import Served, seed_case
from tracker_watch.demo.swarm import LocalSwarm, make_content
from tracker_watch.domain.leases import parse
from tracker_watch.ledger.leases import import_leases


@pytest.fixture(scope="module")
def cases(served: Served) -> dict[str, dict[str, Any]]:
    return {"a": served.run(seed_case(served.db, "Studio A", "Film A", "10.0.0.5", "SUB-A")),
            "b": served.run(seed_case(served.db, "Studio B", "Film B", "10.0.1.7", "SUB-B"))}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("TRACKER_WATCH_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(driver: Any, folder: Path, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 140, 1600))  # the whole page (the window has some chrome)
    assert driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1280, 900)


class Wait:
    """WebDriverWait that shows the page it gave up on (a failing browser test says why)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def until(self, condition: Any) -> Any:
        from selenium.common.exceptions import TimeoutException

        try:
            return WebDriverWait(self.driver, 20).until(condition)
        except TimeoutException:
            raise AssertionError(f"gave up waiting on {self.driver.current_url}:\n{text(self.driver)[:3000]}") from None


def wait(driver: Any) -> Wait:
    return Wait(driver)


def go(driver: Any, served: Served, path: str) -> None:
    driver.get(served.url + path)
    assert "Something went wrong" not in driver.title, text(driver)


def sign_in(driver: Any, served: Served, who: str) -> None:
    go(driver, served, "/console/login")
    driver.find_element(By.ID, "token").send_keys(served.tokens[who])
    driver.find_element(By.ID, "sign-in").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "sign-out")))
    assert "Something went wrong" not in driver.title, text(driver)


def sign_out(driver: Any) -> None:
    driver.find_element(By.ID, "sign-out").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "sign-in")))


def text(driver: Any) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def fetch_status(driver: Any, path: str) -> tuple[int, str]:
    """(status, content type) of a same-origin fetch with the session's cookie, as a link click would send it."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => done([r.status, r.headers.get('content-type')]))"
        ".catch(e => done([0, String(e)]));", path)
    return int(result[0]), str(result[1])


def test_sign_in_and_out(browser: Any, served: Served, shots: Path) -> None:
    go(browser, served, "/console/targets")
    wait(browser).until(ec.presence_of_element_located((By.ID, "sign-in")))  # not signed in: to the sign-in page
    shot(browser, shots, "sign-in")
    browser.find_element(By.ID, "token").send_keys("tw_not-a-real-token")
    browser.find_element(By.ID, "sign-in").click()
    assert "unknown or has been revoked" in wait(browser).until(
        ec.presence_of_element_located((By.ID, "login-error"))).text
    sign_in(browser, served, "a")
    assert browser.current_url.endswith("/console/targets")
    assert "Studio A" in browser.find_element(By.ID, "who").text
    cookie = browser.get_cookie("tw_console")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    sign_out(browser)
    assert "You have signed out" in text(browser)
    go(browser, served, "/console/targets")  # the old session is gone
    wait(browser).until(ec.presence_of_element_located((By.ID, "sign-in")))


def test_register_a_torrent_by_upload(browser: Any, served: Served, tmp_path: Path) -> None:
    content = make_content(tmp_path, name="Upload Film.mkv", size=256 * 1024, piece_length=32 * 1024, seed=3)
    path = tmp_path / "upload.torrent"
    path.write_bytes(content.torrent)
    sign_in(browser, served, "a")
    browser.find_element(By.ID, "one-work").send_keys("Upload Film")
    browser.find_element(By.ID, "one-torrent").send_keys(str(path))
    browser.find_element(By.ID, "register-one").click()
    wait(browser).until(ec.presence_of_element_located((By.ID, "live")))
    assert "Registered target" in text(browser)
    assert "Upload Film.mkv · 256.0 KiB · 8 pieces" in browser.find_element(By.ID, "live").text
    row = served.run(served.db.pool.fetchrow("SELECT input_kind, name FROM targets WHERE name = 'Upload Film.mkv'"))
    assert row is not None
    assert (row["input_kind"], row["name"]) == ("torrent", "Upload Film.mkv")
    sign_out(browser)


def test_bulk_list_with_a_bad_line_registers_nothing(browser: Any, served: Served, shots: Path) -> None:
    count = "SELECT count(*) FROM targets"
    before = served.run(served.db.pool.fetchval(count))
    sign_in(browser, served, "a")
    browser.find_element(By.ID, "bulk-work").send_keys("Season One")
    good1, good2 = "c3" * 20, f"Season Two,magnet:?xt=urn:btih:{'d4' * 20}&dn=Episode%201"
    browser.find_element(By.ID, "bulk-list").send_keys(f"{good1}\nnot-a-hash\n{good2}\n")
    browser.find_element(By.ID, "register-bulk").click()
    errors = wait(browser).until(ec.presence_of_element_located((By.ID, "bulk-errors")))
    assert "1 of 3 line(s) are wrong; nothing was registered" in errors.text
    assert [td.text for td in errors.find_elements(By.CSS_SELECTOR, "td.line")] == ["2"]
    assert "not-a-hash" in errors.text
    assert served.run(served.db.pool.fetchval(count)) == before
    shot(browser, shots, "bulk-errors")
    area = browser.find_element(By.ID, "bulk-list")  # the list is kept: fix the line and send it again
    area.clear()
    area.send_keys(f"{good1}\n{good2}\n")
    browser.find_element(By.ID, "register-bulk").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "Registered 2 new target(s)"))
    assert served.run(served.db.pool.fetchval(count)) == before + 2
    sign_out(browser)


def test_one_holder_never_sees_anothers_cases(browser: Any, served: Served, cases: dict[str, Any],
                                                shots: Path) -> None:
    a = cases["a"]
    sign_in(browser, served, "a")  # A's own case first, as a rights holder sees it
    go(browser, served, f"/console/targets/{a['target']}")
    assert "10.0.0.5" in browser.find_element(By.ID, "peers").text
    assert "passed the hash check" in browser.find_element(By.ID, "peers").text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.g-verified")
    assert fetch_status(browser, f"/console/targets/{a['target']}/evidence?ip=10.0.0.5") == (200, "application/zip")
    shot(browser, shots, "target")
    go(browser, served, "/console/strikes")
    assert f"strike-{a['strike']}" in browser.page_source
    assert "SUB-A" in text(browser)
    shot(browser, shots, "strikes")
    go(browser, served, f"/console/notices/{a['notice']}")
    assert "<IP_Address>10.0.0.5</IP_Address>" in browser.find_element(By.ID, "xml").text
    shot(browser, shots, "notice")
    sign_out(browser)

    sign_in(browser, served, "b")
    assert f"target-{a['target']}" not in browser.page_source
    assert a["hash"] not in browser.page_source
    for path in (f"/console/targets/{a['target']}", f"/console/notices/{a['notice']}",
                 f"/console/notices/{a['notice']}/xml"):
        go(browser, served, path)
        assert "Not found" in browser.title, path
        assert "10.0.0.5" not in browser.page_source
        assert "Film A" not in browser.page_source
    assert fetch_status(browser, f"/console/targets/{a['target']}/evidence?ip=10.0.0.5")[0] == 404
    for path, hidden in (("/console/strikes", "SUB-A"), ("/console/notices", "Film A"),
                         ("/console/search?q=10.0.0.5", "Film A"), (f"/console/search?q={a['hash']}", "Film A"),
                         ("/console/search?q=Film", "Film A")):
        go(browser, served, path)
        assert hidden not in text(browser), path
    go(browser, served, "/console/ops")  # an operator's page
    assert "Not allowed" in browser.title
    sign_out(browser)


def test_a_forged_form_is_refused(browser: Any, served: Served, cases: dict[str, Any]) -> None:
    target = cases["a"]["target"]
    sign_in(browser, served, "a")
    go(browser, served, "/console/targets")
    browser.execute_script(  # what a cross-site form would send: everything but the session's CSRF token
        "const f = document.querySelector(arguments[0]); f.querySelector('input[name=csrf]').value = 'forged';"
        "f.submit();", f"form[action='/console/targets/{target}/pause']")
    message = wait(browser).until(ec.presence_of_element_located((By.ID, "error-message"))).text
    assert "CSRF check failed" in message
    assert served.run(served.db.pool.fetchval("SELECT status FROM targets WHERE id = $1", target)) == "active"
    sign_out(browser)


def test_isp_acknowledges_a_notice(browser: Any, served: Served, cases: dict[str, Any], shots: Path) -> None:
    notice = cases["a"]["notice"]
    sign_in(browser, served, "isp2")  # another ISP sees none of Kaz Telecom's notices
    assert f"notice-{notice}" not in browser.page_source
    sign_out(browser)
    sign_in(browser, served, "isp")
    assert browser.current_url.endswith("/console/notices")
    assert browser.find_element(By.ID, f"notice-{notice}")
    shot(browser, shots, "isp-notices")
    browser.find_element(By.LINK_TEXT, str(notice)).click()
    browser.find_element(By.ID, "ack-note").send_keys("ticket 4711")
    browser.find_element(By.ID, "acknowledge").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "ack"), "Kaz Telecom"))
    logged = served.run(served.db.pool.fetch(
        "SELECT actor, detail FROM audit_log WHERE action = 'notice.acknowledge' AND object = $1", f"notice:{notice}"))
    assert len(logged) == 1
    assert "ticket 4711" in logged[0]["detail"]
    sign_out(browser)
    sign_in(browser, served, "a")  # the rights holder sees it too
    go(browser, served, f"/console/notices/{notice}")
    assert "Kaz Telecom" in browser.find_element(By.ID, "ack").text
    sign_out(browser)


def test_operator_voids_a_strike(browser: Any, served: Served, cases: dict[str, Any], shots: Path) -> None:
    strike = cases["b"]["strike"]
    sign_in(browser, served, "op")
    assert browser.current_url.endswith("/console/ops")
    assert "2 active" in browser.find_element(By.TAG_NAME, "main").text  # strikes, before the void
    assert browser.find_element(By.ID, "nodes")
    shot(browser, shots, "operator-nodes")
    go(browser, served, "/console/strikes")
    browser.find_element(By.ID, f"reason-{strike}").send_keys("dispute upheld: shared connection")
    browser.find_element(By.ID, f"void-{strike}").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.TAG_NAME, "main"), f"Strike {strike} voided"))
    assert "dispute upheld: shared connection" in browser.find_element(By.ID, f"strike-{strike}").text
    row = served.run(served.db.pool.fetchrow("SELECT status, reason FROM strikes WHERE id = $1", strike))
    assert row is not None
    assert (row["status"], row["reason"]) == ("voided", "dispute upheld: shared connection")
    shot(browser, shots, "operator-strikes")
    go(browser, served, "/console/audit")
    assert "strike.void" in text(browser)
    assert "notice.acknowledge" in text(browser)
    shot(browser, shots, "audit-log")
    sign_out(browser)


def test_from_a_magnet_link_to_a_strike_and_its_notice(browser: Any, served: Served, shots: Path,
                                                        tmp_path: Path) -> None:
    """What a first-time user does: paste a magnet link, watch the evidence come in, follow it to the strike
    and the notice — against a local swarm and the real daemon's engine, strike evaluator and outbox."""
    swarm = served.run(LocalSwarm(seeders=1, decoy=False, base=tmp_path / "swarm").start())
    try:
        seeder = swarm.seeder_ips[0]
        served.run(_lease(served, seeder))
        sign_in(browser, served, "a")
        browser.find_element(By.ID, "one-work").send_keys("Demo Film")
        browser.find_element(By.ID, "one-target").send_keys(swarm.content.magnet([swarm.tracker.url]))
        browser.find_element(By.ID, "register-one").click()
        wait(browser).until(ec.presence_of_element_located((By.ID, "live")))
        refresh_until(browser, lambda: "verified" in browser.find_element(By.ID, "peers").text)
        assert seeder in browser.find_element(By.ID, "peers").text
        shot(browser, shots, "magnet-target")
        browser.find_element(By.ID, "work-strikes").click()
        refresh_until(browser, lambda: "SUB-SWARM" in text(browser))
        browser.find_element(By.PARTIAL_LINK_TEXT, "notice").click()
        assert f"<IP_Address>{seeder}</IP_Address>" in browser.find_element(By.ID, "xml").text
        sign_out(browser)
    finally:
        served.run(swarm.stop())


async def _lease(served: Served, ip: str) -> None:
    async with served.db.pool.acquire() as conn:
        await import_leases(conn, "Kaz Telecom", parse("prefix,port_from,port_to,valid_from,valid_to,subscriber\n"
                                                        f"{ip}/32,,,2020-01-01,,SUB-SWARM\n"))


def refresh_until(driver: Any, condition: Any, timeout: float = 90) -> None:
    """Reload the page until the condition holds (the console is server-rendered: new evidence needs a reload)."""
    def check(_: Any) -> bool:
        if condition():
            return True
        driver.refresh()
        return False
    from selenium.common.exceptions import TimeoutException

    try:
        WebDriverWait(driver, timeout, poll_frequency=1.0).until(check)
    except TimeoutException:
        raise AssertionError(f"gave up waiting on {driver.current_url}:\n{text(driver)[:3000]}") from None
