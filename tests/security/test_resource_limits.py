"""Cheap requests cannot buy expensive work: silence costs little, the duration cap binds inbound notes, and a
killed job leaves no ffmpeg or scratch folder behind."""

import contextlib
import os
import subprocess
import sys

from tests.helpers.audio_samples import make_audio, run_ffmpeg
from tests.helpers.processes import ROOT, descendants, wait_until
from tests.helpers.service import audio_rows, run_jobs, set_settings
from webhook_app.audio.transcode import transcode_to_mp3
from webhook_app.runtime.scratch import remove_dead_leftovers, scratch_dir


def test_silence_costs_far_less_than_the_bitrate(tmp_path):
    silence = tmp_path / "silence.flac"
    run_ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "120", "-c:a", "flac", str(silence))
    result = transcode_to_mp3(str(silence), str(tmp_path / "out.mp3"), bitrate_kbps=64)
    full_bitrate_bytes = 120 * 64_000 / 8
    assert result.size_bytes < full_bitrate_bytes / 4  # CBR spent all of it: 960 KB from a 30 KB FLAC
    assert abs(result.duration_s - 120) < 0.5


def test_the_channels_duration_cap_binds_inbound_notes(deliver, app, client, agent_token, tmp_path):
    set_settings(app, "whatsapp", max_duration_s=2)  # INBOUND_MAX_DURATION_S is an hour
    params, _ = deliver(make_audio(tmp_path / "long.ogg", "whatsapp_ogg", seconds=5.0), "audio/ogg")
    run_jobs(app)
    (row,) = audio_rows(app)
    assert row.status == "ready" and row.truncated and abs(row.duration_s - 2.0) < 0.1


KILLED_JOB = """
import sys
from webhook_app.audio.ffmpeg import ffmpeg_binary
from webhook_app.audio.bounded import Bounds, run_ffmpeg
from webhook_app.runtime.scratch import scratch_dir

with scratch_dir("inbound") as workdir:
    open(workdir + "/source", "wb").write(b"a customer's original")
    print(workdir, flush=True)
    # -re: ffmpeg reads at the audio's own pace, so this one would run for ten minutes
    run_ffmpeg([ffmpeg_binary(), "-nostdin", "-re", "-f", "lavfi", "-i", "anullsrc=r=8000", "-t", "600", "-y",
                workdir + "/out.mp3"], Bounds(900))
"""


def test_a_killed_job_takes_its_ffmpeg_along_and_its_scratch_folder_is_removed_later():
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workdir = job.stdout.readline().strip()
        ffmpeg_pid = wait_until(lambda: next(iter(descendants(job.pid)), None), 10, "the job's ffmpeg to start")
        job.kill()  # SIGKILL: no finally, no cleanup
        job.wait(10)
        wait_until(
            lambda: not os.path.exists(f"/proc/{ffmpeg_pid}") or _zombie(ffmpeg_pid), 10, "ffmpeg to die with its job"
        )  # it ran on to the end, orphaned, before
        assert os.path.isdir(workdir)  # nothing removed it: the job was killed
    finally:
        job.kill()

    with scratch_dir("upload") as ours:  # a live process's folder is not a leftover
        assert remove_dead_leftovers(os.path.dirname(workdir)) >= 1
        assert not os.path.exists(workdir) and os.path.isdir(ours)


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    return True
