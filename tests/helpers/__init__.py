"""What several test folders share, imported by name: samples (audio, speech, files that are not audio), the
service's state (rows, jobs, settings), webhooks as Twilio posts them, conversations in the sandbox, the agent API,
real processes and the Procfile's worker. Fixtures are not here: they live in the conftest.py of the folder whose
tests use them (tests/conftest.py for every folder), and no test module imports another."""
