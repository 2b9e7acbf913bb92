"""Media: where the MP3s live and how they are heard.

In: files from the inbound and outbound flows. Out: stored objects in the database or an S3-compatible bucket
(storage.py), served through signed, expiring playback links with ranges (playback.py), deleted after
RETENTION_DAYS while their audit rows stay (retention.py).
"""
