"""Not a test module: the name tests/browser/test_transcript_view.py still imports require_transcribe_extra from,
until it imports it from tests.helpers.speech_samples."""

from tests.helpers.speech_samples import require_transcribe_extra

__all__ = ["require_transcribe_extra"]
