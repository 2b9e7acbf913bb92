"""TwilioHttp against a real socket: failures that only a real connection produces."""

from __future__ import annotations

import io
import socket
import threading

import pytest

from webhook_app.twilio.http import TwilioHttp, TwilioHttpError

BODY = bytes(range(256)) * 400  # 100 kB of media


def serve(answers: list[bytes]) -> tuple[str, list[bytes]]:
    """A server on 127.0.0.1 that answers its n-th connection with answers[n] and closes it; the requests it
    read come back in the list."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def run() -> None:
        with listener:
            for answer in answers:
                connection, _ = listener.accept()
                with connection:
                    received.append(connection.recv(65536))
                    connection.sendall(answer)

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", received


def media_answer(body: bytes, declared: int) -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def test_a_download_cut_off_mid_body_is_retried():
    # The connection drops after a tenth of the body: requests raises ChunkedEncodingError, not ConnectionError.
    base, received = serve([media_answer(BODY[:10000], len(BODY)), media_answer(BODY, len(BODY))])
    sink = io.BytesIO()
    response = TwilioHttp(auth=None, sleep=lambda seconds: None).request("GET", f"{base}/media", stream_to=sink)
    assert response.status == 200
    assert sink.getvalue() == BODY  # the second attempt's bytes only, not the first's tenth in front
    assert len(received) == 2


def test_a_post_cut_off_mid_answer_is_a_transient_error_not_a_crash():
    # Not retried (a create is not idempotent), but reported as Twilio trouble, so the caller can look up
    # whether the message was created before trying again.
    base, received = serve([media_answer(b'{"sid": "IM', 2000)])
    with pytest.raises(TwilioHttpError) as raised:
        TwilioHttp(auth=None, sleep=lambda seconds: None).request("POST", f"{base}/Messages", data={"Body": "x"})
    assert raised.value.transient
    assert len(received) == 1


def test_the_base_url_takes_twilios_rest_calls_but_not_presigned_media_links():
    http = TwilioHttp(auth=None, base_url="http://proxy.internal:8080")
    for url in (
        "https://conversations.twilio.com/v1/Conversations/CH1/Messages",
        "https://mcs.us1.twilio.com/v1/Services/IS1/Media/ME1",
        "https://iam.twilio.com/v1/Accounts/AC1/Tokens/validate",
    ):
        assert http.resolve(url) == "http://proxy.internal:8080" + url.split(".com", 1)[1]
    presigned = "https://media.us1.twilio.com/ME1?Expires=1764460800&Signature=abc&Key-Pair-Id=K1"
    assert http.resolve(presigned) == presigned
    assert TwilioHttp(auth=None).resolve(presigned) == presigned


def test_first_bytes_asks_for_a_range_and_reads_no_further_when_the_server_sends_everything():
    # The pre-event's read of what an attachment is: a server that ignores Range still costs 64 bytes, one request.
    base, received = serve([media_answer(BODY, len(BODY))])
    head = TwilioHttp(auth=("AC1", "secret")).first_bytes(f"{base}/Content", 64, timeout_s=2.0)
    assert head == BODY[:64]
    (request,) = received
    assert b"\r\nRange: bytes=0-63\r\n" in request and b"\r\nAccept-Encoding: identity\r\n" in request


def test_first_bytes_of_an_empty_file_are_none_not_an_error():
    """Object storage answers a range of an empty file 416: that file was read, and it is not audio."""
    empty = b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */0\r\nContent-Length: 0\r\n\r\n"
    base, received = serve([empty])
    assert TwilioHttp(auth=None).first_bytes(f"{base}/Content", 64, timeout_s=2.0) == b""


def test_first_bytes_is_asked_once_and_an_error_status_raises():
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    base, received = serve([busy, busy])
    with pytest.raises(TwilioHttpError) as raised:
        TwilioHttp(auth=None, sleep=lambda seconds: None).first_bytes(f"{base}/Content", 64, timeout_s=2.0)
    assert raised.value.status == 503 and len(received) == 1
