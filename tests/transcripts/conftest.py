"""Transcripts run the bundled model, never the hub: huggingface_hub reads HF_HUB_OFFLINE when it is imported, before
faster-whisper is, and this file is imported before any test module of this folder."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
