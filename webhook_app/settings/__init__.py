"""Settings: what each channel allows, and which channel a conversation runs on.

In: an admin's changes (admin API, CLI), checked against the bitrates and Twilio's caps (rules.py); a
conversation's participants (channels.py). Out: a channel's settings as plain data from a per-process cache that
follows changes within seconds (cache.py), enforced by the inbound and outbound flows.
"""
