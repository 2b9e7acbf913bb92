"""The sandbox's demo: the console's agent, its demo conversations, and a voice note to play the customer with
(the console's "Simulate customer voice note", `flask sandbox send-audio`)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

from ..audio.ffmpeg import ffmpeg_binary
from ..domain_errors import conversation_error
from ..twilio.client import twilio_api
from ..twilio.http import TwilioHttpError
from .account import Sandbox

# The sandbox console's agent. Flex escapes a user's name into their chat identity, which both their token's
# `identity` and their participant in a task's conversation carry: the console's token must too, to reach them.
AGENT_NAME = "agent@example.com"
AGENT_IDENTITY = "agent_40example_2Ecom"
AGENT_ATTRIBUTES = '{"member_type":"agent"}'
DEMO_CONVERSATIONS = (
    ("whatsapp", "Demo customer · WhatsApp"),
    ("sms", "Demo customer · SMS"),
    ("webchat", "Demo customer · Web chat"),
)
DEMO_VOICE_NOTE_S = 5.0
# The demo note: "Hi, this is Maria. My order is late. Please call me back.", 5.0 s, Ogg/Opus 16 kHz mono, 6.5 KB.
# Synthetic speech, no person's voice: generated once with espeak-ng and the service's ffmpeg (imageio-ffmpeg's),
#   espeak-ng -v en-us -s 160 -w note.wav "Hi, this is Maria. My order is late. Please call me back."
#   ffmpeg -i note.wav -af apad=whole_dur=5 -t 5 -ar 16000 -ac 1 -c:a libopus -b:a 12k -application voip \
#     demo-voice-note.ogg
# so that a sandbox with transcription on shows words (tiny.en gives the sentence back exactly).
DEMO_VOICE_NOTE = Path(__file__).with_name("demo-voice-note.ogg")

# Two first visits at once must not both create the demo conversations (one process; the sandbox is local).
_demo_lock = threading.Lock()


def demo_voice_note(path: str, seconds: float | None = None) -> None:
    """A WhatsApp-style voice note (Ogg/Opus, 16 kHz mono) at `path`: the spoken demo note (DEMO_VOICE_NOTE_S long)
    by default; with `seconds`, that many seconds of a few tones (something to hear, nothing to transcribe)."""
    if seconds is None:
        shutil.copyfile(DEMO_VOICE_NOTE, path)
        return
    tones = "sine=f=330:d={0},volume=0.4[a];sine=f=440:d={0},volume=0.4[b];[a][b]concat=n=2:v=0:a=1".format(seconds / 2)
    subprocess.run(
        [
            ffmpeg_binary(),
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-filter_complex",
            tones,
            "-ar",
            "16000",
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            path,
        ],
        check=True,
    )


def service_sandbox() -> Sandbox | None:
    """The sandbox account standing in for Twilio in the service app, or None against real Twilio (the sandbox's own
    app finds its account with served.current_sandbox)."""
    sandbox = twilio_api().sandbox
    return sandbox if isinstance(sandbox, Sandbox) else None


def ensure_demo_conversations(sandbox: Sandbox) -> None:
    """WhatsApp, SMS and web chat conversations with the console's agent in them, created once per sandbox."""
    api = twilio_api()
    with _demo_lock:
        try:
            existing = {c["friendly_name"]: c["sid"] for c in api.conversations()}
            joined = {c["sid"] for c in api.participant_conversations(AGENT_IDENTITY)}
        except TwilioHttpError as exc:
            raise conversation_error(exc) from exc
        for channel, name in DEMO_CONVERSATIONS:
            sid = existing.get(name) or sandbox.create_conversation(name, channel)["sid"]
            # A sandbox from before the agent carried Flex's escaped identity has demo conversations without them.
            if sid not in joined:
                sandbox.add_participant(sid, identity=AGENT_IDENTITY, attributes=AGENT_ATTRIBUTES)
