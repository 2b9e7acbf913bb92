"""Moved to tests/transcripts/test_engine.py. This name stays only until tests/browser/test_transcript_view.py
imports require_transcribe_extra from its new place."""

from tests.transcripts.test_engine import require_transcribe_extra

__all__ = ["require_transcribe_extra"]
