"""Inbound: a customer's voice note, from webhook to playable MP3.

In: Conversations webhooks' fields (their media list parsed by twilio/attachments.py), which become `queued` audit
rows (record.py); messages read over REST for the attachments a web chat webhook did not show (expand.py) or that no
webhook announced (backfill.py). Out: each row downloaded from MCS, normalized to MP3 and stored by a job
(normalize.py), `ready` for playback (media/) or `failed` with its reason. dispatch.py is what inbound registers
with jobs/: its outbox (rows the relay hands to RQ on PostgreSQL) and its recovery step for the sweeper.
"""
