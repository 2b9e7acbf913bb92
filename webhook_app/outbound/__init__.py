"""Outbound: an agent's recording, from upload to message in the conversation.

In: the agent API's upload (agent/api.py), or a message an agent attached natively in Flex, which Twilio's
pre-event shows first. Out: an MP3 at the channel's bitrate within its caps (convert.py), uploaded to MCS and
posted once (post.py), one audit row per attempt with its Idempotency-Key (attempts.py), all driven by send.py;
or a 403 that keeps forbidden agent audio out of the conversation (pre_event.py).
"""
