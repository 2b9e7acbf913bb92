"""Transcripts of voice notes, made on the worker itself: no audio leaves the deployment.

engine.py turns an audio file into a Transcript with faster-whisper (the optional `transcribe` extra); job.py is the
job that a `ready` audio message's transcript row (`queued`) is handed to, on the transcripts lane, and what
transcription registers with jobs/ (its lane, run apart where the extra is installed, and its recovery step for the
sweeper); search.py shows transcripts in the APIs and searches them (admin audit `q=`); languages.py is Whisper's
language list (settings validate against it). The sandbox turns transcription on (sandbox/transcripts.py). Without
the extra, importing any of them still works, and transcribing raises TranscriptionUnavailable (the job records
"transcription is not installed").
"""
