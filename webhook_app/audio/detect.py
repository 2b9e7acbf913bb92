"""Is this attachment audio, and what is it really (by its bytes, not its label)?"""

from __future__ import annotations

import os

# What channels and browsers label voice notes with. WhatsApp says `audio/ogg; codecs=opus`, MMS often
# `audio/amr` or `video/3gpp` (voice clips recorded by phone apps), iOS `audio/mp4` or `audio/x-m4a`.
AUDIO_CONTENT_TYPES = {
    "audio/ogg",
    "audio/opus",
    "audio/amr",
    "audio/amr-wb",
    "audio/3gpp",
    "audio/3gpp2",
    "video/3gpp",
    "video/3gpp2",
    "audio/mp4",
    "audio/x-m4a",
    "audio/m4a",
    "audio/aac",
    "audio/x-aac",
    "audio/aacp",
    "audio/mpeg",
    "audio/mp3",
    "audio/mpeg3",
    "audio/x-mpeg",
    "audio/wav",
    "audio/x-wav",
    "audio/wave",
    "audio/vnd.wave",
    "audio/webm",
    "audio/flac",
    "audio/x-flac",
    "audio/basic",
    "audio/x-caf",
}
AUDIO_EXTENSIONS = {
    ".ogg",
    ".oga",
    ".opus",
    ".amr",
    ".awb",
    ".3gp",
    ".3ga",
    ".m4a",
    ".aac",
    ".mp3",
    ".wav",
    ".webm",
    ".weba",
    ".flac",
    ".caf",
}
# Bytes read to tell a container; tags stacked at a file's start, at most (one is usual, two seen in the wild).
SNIFF_BYTES = 64
MAX_ID3_TAGS = 4
# A generic label says nothing; then the file name decides.
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


def base_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_audio(content_type: str | None, filename: str | None = None) -> bool:
    kind = base_type(content_type)
    if kind in AUDIO_CONTENT_TYPES or kind.startswith("audio/"):
        return True
    if kind in GENERIC_TYPES and filename:
        return os.path.splitext(filename)[1].lower() in AUDIO_EXTENSIONS
    return False


def sniff(head: bytes) -> str | None:
    """The container of a file from its first bytes, or None when it is no audio we know."""
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"  # EBML: WebM or Matroska
    if head.startswith(b"#!AMR-WB\n"):
        return "amr-wb"
    if head.startswith(b"#!AMR\n"):
        return "amr"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"caff"):
        return "caf"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "3gp" if brand.startswith(b"3g") else "mp4"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        layer = (head[1] >> 1) & 0x03
        if layer == 0b01:
            return "mp3"  # MPEG audio layer III
        if layer == 0b00:
            return "aac"  # ADTS
    return None


def sniff_file(path: str) -> str | None:
    """The container of the file at `path`: what its first bytes say, looking behind ID3 tags.

    An ID3v2 tag opens MP3 files, and sometimes AAC or FLAC ones; what follows it decides the demuxer ffmpeg is
    told to use (audio/bounded.py). Behind a tag, bytes we do not know are read as MP3: the MP3 demuxer turns
    anything that is not MPEG audio (a playlist, say) into an error, never into a file it opens."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
        offset = 0
        for _ in range(MAX_ID3_TAGS):
            size = id3_tag_size(head)
            if size is None:
                break
            offset += size
            handle.seek(offset)
            head = handle.read(SNIFF_BYTES)
        found = sniff(head)
        return "mp3" if offset and found is None else found


def id3_tag_size(head: bytes) -> int | None:
    """The length of the ID3v2 tag that `head` starts with (header, body and footer), or None."""
    if len(head) < 10 or not head.startswith(b"ID3") or any(byte & 0x80 for byte in head[6:10]):
        return None
    body = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]  # "syncsafe": 7 bits a byte
    has_footer = head[5] & 0x10
    return 10 + body + (10 if has_footer else 0)
