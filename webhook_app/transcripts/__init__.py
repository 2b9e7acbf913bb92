"""Transcripts of voice notes, made on the worker itself: no audio leaves the deployment.

engine.py turns an audio file into a Transcript with faster-whisper (the optional `transcribe` extra). Nothing else
in the service imports this package yet; without the extra, importing it still works, and transcribing raises
TranscriptionUnavailable.
"""

from webhook_app.transcripts.engine import (  # noqa: F401
    LanguageNotSupported,
    Transcript,
    TranscriptionError,
    TranscriptionUnavailable,
    load_model,
    transcribe,
)
