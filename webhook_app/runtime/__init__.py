"""Process runtime helpers every flow leans on: start-up checks and the schema they compare (startup, schema),
dependencies going away and coming back (outages, retry), scratch space (scratch), the in-memory cache (cache),
gevent waits (greenlets) and the one place private library APIs are used (compat).
"""
