"""The load benchmark's baseline: a bare Flask app whose webhook route only answers 200.

Same URL and the same request bytes as the real webhook, served by gunicorn with the same settings, so the
difference between the two is what the service does per webhook (signature, parsing, the row, the job).
"""

from flask import Flask

app = Flask(__name__)


@app.post("/twilio/conversations/post-event")
def post_event():
    return "", 200
