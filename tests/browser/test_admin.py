"""The /admin page in a real Chromium: sign-in, the per-channel settings editor (and that a change reaches the
upload API, the pre-event webhook and the agent's record panel at once), and the audit browser with its CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers.audio_samples import make_audio
from tests.helpers.conversations import conversation_with_agent
from webhook_app.sandbox.demo import AGENT_ATTRIBUTES, AGENT_IDENTITY

ADMIN = "test-admin-token"
PRE_EVENT = "/twilio/conversations/pre-event"
POST_EVENT = "/twilio/conversations/post-event"


@pytest.fixture(autouse=True)
def admin_token(app):
    app.config["ADMIN_TOKEN"] = ADMIN  # read per request, so setting it before the first request is enough


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login(page, live_server: str, token: str) -> None:
    page.goto(f"{live_server}/admin")
    page.get_by_label("Admin token or Flex token (admin or supervisor)").fill(token)
    page.get_by_role("button", name="Sign in", exact=True).click()


def login_as_admin(page, live_server: str) -> None:
    login(page, live_server, ADMIN)
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as admin-token")
    expect(page.locator(".channel-card")).to_have_count(5)


def settings_card(page, channel: str):
    return page.locator(f'.channel-card[data-channel="{channel}"]')


def save(card, expected: str | re.Pattern = "Saved") -> None:
    card.get_by_role("button", name=re.compile(r"^Save ")).click()
    expect(card.locator("[data-feedback]")).to_have_text(expected)


def upload(live_server: str, token: str, conversation: str, path, content_type: str = "audio/webm"):
    with open(path, "rb") as handle:
        return requests.post(
            f"{live_server}/api/v1/conversations/{conversation}/audio",
            headers=bearer(token),
            files={"audio": (Path(path).name, handle, content_type)},
            timeout=60,
        )


def audio_settings(live_server: str, token: str, conversation: str) -> dict:
    response = requests.get(
        f"{live_server}/api/v1/conversations/{conversation}/audio-settings", headers=bearer(token), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(check, timeout: float = 5.0, interval: float = 0.1):
    """Poll until `check()` is truthy ("within a few seconds"); return its value or fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def agent_audio_pre_event(live_server: str, sandbox, conversation: str, participant_sid: str):
    """onMessageAdd for an agent's native Flex audio attachment, signed as Twilio signs it."""
    url = live_server + PRE_EVENT
    params = {
        "AccountSid": sandbox.account_sid,
        "EventType": "onMessageAdd",
        "ConversationSid": conversation,
        "ChatServiceSid": sandbox.chat_service_sid,
        "Source": "SDK",
        "ClientIdentity": AGENT_IDENTITY,
        "Author": AGENT_IDENTITY,
        "ParticipantSid": participant_sid,
        "Attributes": "{}",
        "RetryCount": "0",
        "Media": json.dumps(
            [{"Sid": "ME" + "0" * 31 + "1", "ContentType": "audio/mpeg", "Filename": "a.mp3", "Size": 1000}]
        ),
    }
    return requests.post(url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=10)


def open_record_panel(console, live_server: str, conversation: str) -> None:
    console.goto(f"{live_server}/agent/conversations/{conversation}")
    console.get_by_role("button", name="Voice note: show the recorder").click()
    expect(console.locator(".rp-body")).to_be_visible()


def audit_api(live_server: str, **params) -> dict:
    response = requests.get(f"{live_server}/api/v1/admin/audit", params=params, headers=bearer(ADMIN), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def table_ids(page) -> list[int]:
    return [
        int(value) for value in page.locator("#audit-rows tr").evaluate_all("rows => rows.map(r => r.dataset.auditId)")
    ]


# -- Test 1 --------------------------------------------------------------------------------------------------


def test_disabling_whatsapp_in_the_page_blocks_agent_audio_everywhere_and_reenabling_restores_it(
    page, live_server, sandbox, agent_token, tmp_path
):
    conversation = sandbox.create_conversation("WhatsApp customer", "whatsapp")["sid"]
    participant = sandbox.add_participant(conversation, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    recording = make_audio(tmp_path / "rec.webm", "webm", 1.0)
    assert audio_settings(live_server, agent_token, conversation)["sending_enabled"] is True

    login_as_admin(page, live_server)
    whatsapp = settings_card(page, "whatsapp")
    expect(whatsapp.get_by_role("heading", name="WhatsApp")).to_be_visible()
    expect(whatsapp.get_by_label("Max size per file (MB)")).to_have_value("16")
    expect(whatsapp).to_contain_text("Up to 16 MB, Twilio's limit for WhatsApp.")
    switch = whatsapp.get_by_role("switch", name="Agents may send audio")
    expect(switch).to_be_checked()
    switch.uncheck()
    expect(whatsapp).to_contain_text("Unsaved changes")
    with page.expect_request(lambda r: r.method == "PUT") as put:
        save(whatsapp)
    assert put.value.post_data_json == {"sending_enabled": False}, "only the changed key is sent"
    assert put.value.headers["x-csrf-token"] == page.locator('meta[name="csrf-token"]').get_attribute("content")
    expect(whatsapp).to_have_attribute("data-sending-enabled", "false")
    expect(whatsapp.locator(".badge")).to_have_text("Sending off")
    expect(whatsapp.locator(".card-meta")).to_contain_text("by admin-token")
    expect(page.locator("#changes-rows tr").first).to_contain_text("WhatsApp")
    expect(page.locator("#changes-rows tr").first).to_contain_text("Agents may send audio")
    expect(page.locator("#changes-rows tr").first.locator("td").nth(3)).to_have_text("on")
    expect(page.locator("#changes-rows tr").first.locator("td").nth(4)).to_have_text("off")

    # (a) the agent API: the record panel's settings say no, and an upload is refused.
    assert wait_for(lambda: audio_settings(live_server, agent_token, conversation)["sending_enabled"] is False)
    refused = upload(live_server, agent_token, conversation, recording)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "sending_disabled"
    # (b) audio attached natively in Flex is rejected by the pre-event webhook.
    rejected = agent_audio_pre_event(live_server, sandbox, conversation, participant["sid"])
    assert rejected.status_code == 403, rejected.text
    assert "disabled" in rejected.json()["error"]["message"]
    # (c) the agent console's record panel says so instead of offering a Record button.
    console = page.context.new_page()
    open_record_panel(console, live_server, conversation)
    expect(console.locator(".rp-stage")).to_have_text("Audio sending is disabled for this channel")
    expect(console.get_by_role("button", name="Start recording a voice note")).to_have_count(0)

    # Re-enable in the page: everything is back.
    switch.check()
    save(whatsapp)
    expect(whatsapp).to_have_attribute("data-sending-enabled", "true")
    assert wait_for(lambda: audio_settings(live_server, agent_token, conversation)["sending_enabled"] is True)
    sent = upload(live_server, agent_token, conversation, recording)
    assert sent.status_code == 201, sent.text
    assert sent.json()["content_type"] == "audio/mpeg"
    allowed = agent_audio_pre_event(live_server, sandbox, conversation, participant["sid"])
    assert allowed.status_code == 200, allowed.text
    open_record_panel(console, live_server, conversation)
    expect(console.get_by_role("button", name="Start recording a voice note")).to_be_visible()
    console.close()

    # Saving an unchanged card sends nothing.
    save(whatsapp, "Nothing to save: no changes.")


def test_settings_card_converts_units_and_enforces_the_channel_hard_max(page, live_server, app):
    login_as_admin(page, live_server)
    sms = settings_card(page, "sms")
    size = sms.get_by_label("Max size per file (MB)")
    expect(size).to_have_value("2")
    expect(sms).to_contain_text("Up to 2 MB, Twilio's limit for SMS / MMS.")

    # Over Twilio's limit for the channel: refused in the page, nothing sent.
    size.fill("3")
    requests_sent = []
    page.on("request", lambda r: requests_sent.append(r) if r.method == "PUT" else None)
    save(sms, "SMS / MMS accepts at most 2 MB per file.")
    expect(size).to_have_attribute("aria-invalid", "true")
    assert requests_sent == []

    # MB -> bytes, minutes + seconds -> seconds, bitrate, and the two inbound switches, in one PUT.
    size.fill("1.5")
    sms.get_by_label("Max duration: minutes").fill("2")
    sms.get_by_label("Max duration: seconds").fill("30")
    sms.get_by_label("MP3 bitrate").select_option("32")
    sms.get_by_label("Normalize inbound audio to MP3").uncheck()
    sms.get_by_label("Loudness normalization (EBU R128)").check()
    with page.expect_request(lambda r: r.method == "PUT") as put:
        save(sms)
    assert put.value.post_data_json == {
        "max_bytes": 1_572_864,
        "max_duration_s": 150,
        "bitrate_kbps": 32,
        "normalize_inbound": False,
        "loudness_normalize": True,
    }
    stored = requests.get(f"{live_server}/api/v1/admin/settings/sms", headers=bearer(ADMIN), timeout=10).json()
    assert (stored["max_bytes"], stored["max_duration_s"], stored["bitrate_kbps"]) == (1_572_864, 150, 32)
    assert stored["normalize_inbound"] is False and stored["loudness_normalize"] is True
    expect(size).to_have_value("1.5")

    # A reload shows what was stored; the recent-changes list can be narrowed to one channel.
    page.reload()
    sms = settings_card(page, "sms")
    expect(sms.get_by_label("Max duration: minutes")).to_have_value("2")
    expect(sms.get_by_label("Max duration: seconds")).to_have_value("30")
    expect(sms.get_by_label("MP3 bitrate")).to_have_value("32")
    page.locator("#changes-channel").select_option("whatsapp")
    expect(page.locator("#changes-empty")).to_be_visible()
    page.locator("#changes-channel").select_option("sms")
    expect(page.locator("#changes-rows tr")).to_have_count(5)

    # The server's own error message is shown next to the card.
    page.route(
        "**/api/v1/admin/settings/sms",
        lambda route: route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": {"code": "bad_settings", "message": "bitrate_kbps must be one of 32, 64"}}),
        ),
    )
    sms.get_by_label("MP3 bitrate").select_option("96")
    save(sms, "bitrate_kbps must be one of 32, 64")
    expect(sms.locator("[data-feedback]")).to_have_class(re.compile("feedback--error"))


# -- Test 2 --------------------------------------------------------------------------------------------------


def test_audit_browser_filters_details_pagination_and_csv(page, live_server, sandbox, agent_token, tmp_path, artifacts):
    whatsapp = conversation_with_agent(sandbox, "WhatsApp customer", "whatsapp")
    sms = conversation_with_agent(sandbox, "SMS customer", "sms")
    recording = make_audio(tmp_path / "rec.webm", "webm", 2.0)
    junk = tmp_path / "junk.webm"
    junk.write_text("not audio at all\n" * 40)
    assert upload(live_server, agent_token, whatsapp, recording).status_code == 201
    assert upload(live_server, agent_token, sms, recording).status_code == 201
    bad = upload(live_server, agent_token, whatsapp, junk)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "not_audio"
    # A customer's voice note, delivered as Twilio delivers it and normalized by a job.
    note = make_audio(tmp_path / "note.ogg", "whatsapp_ogg", 3.0)
    params = sandbox.customer_sends_media(whatsapp, Path(note).read_bytes(), "audio/ogg", "note.ogg")
    url = live_server + POST_EVENT
    assert (
        requests.post(
            url, data=params, headers={"X-Twilio-Signature": sandbox.sign(url, params)}, timeout=10
        ).status_code
        == 200
    )
    assert wait_for(lambda: audit_api(live_server, direction="inbound", status="ready")["total"] == 1, timeout=60)

    everything = audit_api(live_server)["audio_messages"]
    assert len(everything) == 4
    all_ids = [row["audit_id"] for row in everything]  # newest first
    whatsapp_ready = [
        row["audit_id"] for row in everything if row["channel"] == "whatsapp" and row["status"] == "ready"
    ]
    (failed_id,) = [row["audit_id"] for row in everything if row["status"] == "failed"]
    (inbound_id,) = [row["audit_id"] for row in everything if row["direction"] == "inbound"]

    login_as_admin(page, live_server)
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–4 of 4 audio messages")
    assert table_ids(page) == all_ids

    # Filter by channel, then status: the table and the address follow.
    page.locator("#filter-channel").select_option("whatsapp")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–3 of 3 audio messages")
    page.locator("#filter-status").select_option("ready")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–2 of 2 audio messages")
    rows = page.locator("#audit-rows tr")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i)).to_have_attribute("data-channel", "whatsapp")
        expect(rows.nth(i)).to_have_attribute("data-status", "ready")
    assert table_ids(page) == whatsapp_ready
    assert "channel=whatsapp" in page.url and "status=ready" in page.url
    csv_link = page.get_by_role("link", name="Download CSV")
    expect(csv_link).to_have_attribute("href", "/api/v1/admin/audit?channel=whatsapp&status=ready&format=csv")

    # The customer's note: details with timings and sizes, and a player that really loads the MP3.
    page.locator(f'#audit-rows tr[data-audit-id="{inbound_id}"] td').nth(2).click()
    detail = page.locator("#audit-detail")
    expect(detail.get_by_role("heading", name=f"Audio message #{inbound_id}")).to_be_visible()
    expect(detail).to_contain_text(whatsapp)
    expect(detail).to_contain_text("note.ogg")
    expect(detail).not_to_contain_text("null")
    expect(detail).not_to_contain_text("undefined")
    expect(detail).to_contain_text(params["MessageSid"])
    expect(detail.locator("dd").filter(has_text=re.compile(r"^\d+ ms$")).first).to_be_visible()
    audio = detail.locator("audio")
    expect(audio).to_have_attribute("src", re.compile(r"/media/"))
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=audio.element_handle(), timeout=15_000)
    assert abs(audio.evaluate("a => a.duration") - 3.0) < 0.2
    page.screenshot(path=str(artifacts / "admin.png"), full_page=True)

    # The CSV link carries the filter: its rows are the table's rows.
    with page.expect_download() as download:
        csv_link.click()
    assert download.value.suggested_filename == "audio-audit.csv"
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [int(row["audit_id"]) for row in exported] == whatsapp_ready
    assert {(row["channel"], row["status"]) for row in exported} == {("whatsapp", "ready")}

    # Failed rows show the reason, in the table and in the details; no player.
    page.locator("#filter-status").select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("not audio we can decode")  # the upload's reason, shown in the row
    rows.first.get_by_role("button", name=f"Show details of audio message {failed_id}").click()
    expect(detail.locator(".detail-error")).to_contain_text("not_audio")
    expect(detail.locator("audio")).to_have_count(0)
    page.get_by_role("button", name="Close details").click()
    expect(detail).to_be_hidden()

    # Time range: a preset, then a custom range that ends before anything happened.
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–4 of 4 audio messages")
    page.get_by_label("Time range").select_option("1h")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–4 of 4 audio messages")
    page.get_by_label("Time range").select_option("today")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–4 of 4 audio messages")
    page.get_by_label("Time range").select_option("custom")
    page.get_by_label("Until").fill("2020-01-01T00:00:00")
    expect(page.locator("#audit-summary")).to_have_text("No audio messages match these filters.")
    expect(rows).to_have_count(0)
    assert "until=" in csv_link.get_attribute("href")
    page.get_by_label("Until").fill("")
    page.get_by_label("From").fill("2020-01-01T00:00:00")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–4 of 4 audio messages")

    # By conversation (text field: applied with Enter).
    page.get_by_label("Time range").select_option("")
    page.get_by_label("Conversation SID").fill(sms)
    page.get_by_label("Conversation SID").press("Enter")
    expect(page.locator("#audit-summary")).to_have_text("Showing 1–1 of 1 audio message")
    expect(rows.first).to_have_attribute("data-channel", "sms")

    # Pagination, newest first, from a bookmarkable address.
    page.goto(f"{live_server}/admin?per_page=2")
    expect(page.locator("#audit-page")).to_have_text("Page 1 of 2")
    expect(page.get_by_role("button", name="← Previous")).to_be_disabled()
    expect(rows).to_have_count(2)
    assert table_ids(page) == all_ids[:2]
    page.get_by_role("button", name="Next →").click()
    expect(page.locator("#audit-page")).to_have_text("Page 2 of 2")
    expect(page.locator("#audit-summary")).to_have_text("Showing 3–4 of 4 audio messages")
    expect(page.get_by_role("button", name="Next →")).to_be_disabled()
    assert table_ids(page) == all_ids[2:]
    page.go_back()
    expect(page.locator("#audit-page")).to_have_text("Page 1 of 2")


# -- Test 3 --------------------------------------------------------------------------------------------------


def test_only_admins_and_supervisors_sign_in_and_the_session_needs_the_csrf_header(page, live_server, sandbox):
    agent = sandbox.issue_token(AGENT_IDENTITY, roles=["agent"])
    with page.expect_response(lambda r: r.url.endswith("/admin/login")) as answer:
        login(page, live_server, agent)
    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("admin or supervisor is required")
    expect(page.locator("#admin-app")).to_have_count(0)

    login(page, live_server, "not-a-token")
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.locator("#admin-app")).to_have_count(0)

    supervisor = sandbox.issue_token("supervisor@example.com", roles=["supervisor"])
    login(page, live_server, supervisor)
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as supervisor@example.com")
    expect(page.locator(".channel-card")).to_have_count(5)

    put = """async ({withCsrf}) => {
        const headers = {"Content-Type": "application/json"};
        if (withCsrf) headers["X-CSRF-Token"] = document.querySelector('meta[name="csrf-token"]').content;
        const response = await fetch("/api/v1/admin/settings/sms", {method: "PUT", credentials: "same-origin",
                                     headers, body: JSON.stringify({bitrate_kbps: 48})});
        return {status: response.status, body: await response.json()};
    }"""
    forged = page.evaluate(put, {"withCsrf": False})
    assert forged["status"] == 403 and forged["body"]["error"]["code"] == "csrf_failed"
    ok = page.evaluate(put, {"withCsrf": True})
    assert ok["status"] == 200 and ok["body"]["bitrate_kbps"] == 48
    assert ok["body"]["updated_by"] == "supervisor@example.com"

    # Signing out ends the session: the API no longer answers the cookie, and the page asks to sign in again.
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_label("Admin token or Flex token (admin or supervisor)")).to_be_visible()
    status = page.evaluate("async () => (await fetch('/api/v1/admin/settings', {credentials: 'same-origin'})).status")
    assert status == 401


# -- the sandbox's way in, and what the page shows ---------------------------------------------------------------


def test_the_sandbox_signs_in_with_one_button(page, live_server):
    page.goto(f"{live_server}/admin")
    with page.expect_response(lambda r: r.url.endswith("/admin/sandbox-login")) as answer:
        page.get_by_role("button", name="Sign in to the sandbox").click()
    assert answer.value.status == 302
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as admin@example.com")
    expect(page.locator(".channel-card")).to_have_count(5)
    # A real admin session: the page's own API calls are answered.
    status = page.evaluate("async () => (await fetch('/api/v1/admin/settings', {credentials: 'same-origin'})).status")
    assert status == 200


def test_times_carry_their_zone_and_durations_round_as_in_the_agent_console(
    browser, live_server, sandbox, agent_token, tmp_path
):
    """A 3.9 s reply reads 0:04 on the admin page and in the agent console alike (it read 0:03 in the console)."""
    conversation = sandbox.create_conversation("WhatsApp customer", "whatsapp")["sid"]
    sandbox.add_participant(conversation, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
    sent = upload(live_server, agent_token, conversation, make_audio(tmp_path / "reply.webm", "webm", 3.9))
    assert sent.status_code == 201, sent.text
    assert 3.5 <= sent.json()["duration_s"] < 4.5, sent.json()
    (row,) = audit_api(live_server)["audio_messages"]
    new_york = datetime.fromisoformat(row["created_at"]).astimezone(ZoneInfo("America/New_York"))

    context = browser.new_context(timezone_id="America/New_York", locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{live_server}/admin")
        page.get_by_role("button", name="Sign in to the sandbox").click()
        cells = page.locator(f'#audit-rows tr[data-audit-id="{row["audit_id"]}"] td')
        expect(cells.nth(1)).to_have_text(new_york.strftime("%Y-%m-%d %H:%M:%S %Z"))  # EST or EDT
        expect(cells.nth(5)).to_have_text("0:04")
        page.get_by_label("Time range").select_option("custom")
        expect(page.locator("#custom-range")).to_contain_text(f"From ({new_york:%Z})")

        page.goto(f"{live_server}/agent/conversations/{conversation}")
        expect(page.locator(".al-row--outbound .al-duration")).to_have_text("0:04", timeout=30_000)
    finally:
        context.close()


def test_transcription_switch_and_language_and_a_search_marked_in_the_audit(page, live_server, app, sandbox):
    """The card's two transcription controls save as audited settings; the audit's "Said in the note" search lists
    the note and marks the words it found, as DOM text (a transcript's `<b>` stays text)."""
    from webhook_app.extensions import db
    from webhook_app.models import AudioMessage, Transcript

    login_as_admin(page, live_server)
    card = settings_card(page, "sms")
    card.get_by_label("Transcribe voice notes").check()
    card.get_by_label("Transcription language").select_option("es")
    save(card)
    changed = requests.get(f"{live_server}/api/v1/admin/settings/sms", headers=bearer(ADMIN), timeout=10).json()
    assert changed["transcribe"] is True and changed["transcribe_language"] == "es"

    conversation = sandbox.create_conversation("Customer", "sms")["sid"]
    with app.app_context():
        row = AudioMessage(
            direction="inbound",
            channel="sms",
            status="ready",
            conversation_sid=conversation,
            message_sid="IM" + "1" * 32,
            media_sid="ME" + "1" * 32,
            source="SMS",
        )
        db.session.add(row)
        db.session.flush()
        db.session.add(
            Transcript(
                audio_message_id=row.id,
                status="done",
                attempts=1,
                language="es",
                text="Hola, <b>llámame</b> mañana por la tarde, gracias",
                segments=[],
            )
        )
        db.session.commit()
    page.get_by_label("Said in the note").fill("mañana")
    page.get_by_label("Said in the note").press("Enter")
    expect(page.locator("#audit-rows tr")).to_have_count(1)
    expect(page.locator("#audit-rows mark")).to_have_text(["mañana"])
    expect(page.locator("#audit-rows .match")).to_contain_text("<b>llámame</b>")
    assert "q=ma%C3%B1ana" in page.url
    page.locator("#audit-rows tr button").first.click()  # the row's detail: the whole transcript, as text
    expect(page.locator(".detail-transcript .transcript-text")).to_have_text(
        "Hola, <b>llámame</b> mañana por la tarde, gracias"
    )
    expect(page.locator(".detail-transcript")).to_contain_text("done · es")
