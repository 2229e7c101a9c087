"""`bench/profile_summary.py`: each sample counted once, for the layer of its innermost
frame that has one (a standard-library helper counts for its caller)."""

from bench.profile_summary import frames_of, layer_of, summarize

WRITE = (
    "Worker.tick (sagas/engine/worker.py:94);transition_record "
    "(sagas/engine/store/transition.py:150);execute (sagas/engine/store/dialect.py:98);"
    "CursorWrapper._execute (django/db/backends/utils.py:105)"
)
UUID_FOR_CALLER = "adapt (sagas/engine/store/dialect.py:88);UUID.__str__ (uuid.py:280)"
LOG_LINE = "event_emit (sagas/engine/store/events.py:97);Logger.info (logging/__init__.py:1489)"


def test_a_sample_is_the_layer_of_its_innermost_frame_that_has_one():
    assert layer_of(frames_of(WRITE)) == "database driver and Django's db layer"
    assert layer_of(frames_of(LOG_LINE)) == "logging"
    assert layer_of(frames_of(UUID_FOR_CALLER)) == "project code (its own frames)"
    assert layer_of(frames_of("main (<frozen runpy>);helper (abc.py:1)")) == "other"


def test_the_summary_splits_the_samples_by_layer_first(tmp_path):
    stacks = tmp_path / "profile-worker-1.txt"
    stacks.write_text(f"thread (1): w;{WRITE} 3\nthread (1): w;{LOG_LINE} 1\n")

    summary = summarize([stacks], top=5, prefixes=("sagas/",)).splitlines()

    assert summary[:4] == [
        "4 samples in 1 files",
        "by layer:",
        "   75.0%  database driver and Django's db layer",
        "   25.0%  logging",
    ]
