"""predictions.h5: round trip, per-model atomic writes, resumability checks, reports computed from it."""
import csv
import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from imnet.errors import ImnetError
from imnet.eval.report import COLUMNS, Skipped, results_from_store, write_reports
from imnet.eval.store import (ModelPredictions, is_finished, read_model, read_store,
                              remove_stale_temp_files, stored_models, write_model)

TIMM_COLUMNS = ["model", "top1", "top1_err", "top5", "top5_err", "param_count", "img_size", "crop_pct",
                "interpolation"]


def _preds(name, n=7, classes=12, seed=0, crops=(1, 10), indices=None, labels=None):
    rng = np.random.default_rng(seed)
    indices = np.arange(n) if indices is None else np.asarray(indices)
    labels = rng.integers(0, classes, size=n) if labels is None else np.asarray(labels)
    return ModelPredictions(
        name=name,
        files=[f"n{lab:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i, lab in zip(indices, labels)],
        labels=labels, indices=indices,
        logits={c: rng.standard_normal((n, classes)).astype(np.float16) for c in crops},
        config={"crop_size": 32, "resize_size": 37, "crop_pct": 0.875, "interpolation": "bilinear"},
        info={"param_count": 1.234, "gmacs": 0.5, "images_per_sec": 321.0, "loader": "torch", "amp": "off",
              "device": "cpu", "pass_crops": max(crops), "n_split": n, "partial": False},
    )


def test_round_trip(tmp_path):
    store = tmp_path / "predictions.h5"
    a = _preds("model/a")
    write_model(store, a)
    back = read_model(store, "model/a")
    assert back.name == "model/a" and back.files == a.files
    assert back.labels.dtype == np.int64 and np.array_equal(back.labels, a.labels)
    assert np.array_equal(back.indices, a.indices)
    assert set(back.logits) == {1, 10}
    assert back.logits[10].dtype == np.float16 and np.array_equal(back.logits[10], a.logits[10])
    assert back.config == a.config and back.info == a.info
    assert read_model(store, "other") is None


def test_adding_and_replacing_models_keeps_the_others(tmp_path):
    store = tmp_path / "predictions.h5"
    write_model(store, _preds("a", seed=1))
    write_model(store, _preds("b", seed=2))
    assert stored_models(store) == ["a", "b"]
    size_two = store.stat().st_size
    new_a = _preds("a", seed=3, crops=(5,))
    write_model(store, new_a)     # replace: rebuilt, not grown
    assert stored_models(store) == ["a", "b"]
    assert store.stat().st_size <= size_two * 1.1
    stored = {p.name: p for p in read_store(store)}
    assert set(stored["a"].logits) == {5}
    assert np.array_equal(stored["a"].logits[5], new_a.logits[5])
    assert np.array_equal(stored["b"].logits[1], _preds("b", seed=2).logits[1])
    assert not list(tmp_path.glob(".predictions.h5.tmp-*"))


def test_failed_write_leaves_store_unchanged(tmp_path, monkeypatch):
    store = tmp_path / "predictions.h5"
    write_model(store, _preds("a"))
    before = store.read_bytes()
    import imnet.eval.store as store_mod

    real = store_mod._write_group

    def half_then_fail(group, preds):
        group.create_dataset("labels", data=preds.labels)
        raise RuntimeError("killed")

    monkeypatch.setattr(store_mod, "_write_group", half_then_fail)
    with pytest.raises(RuntimeError):
        write_model(store, _preds("b"))
    monkeypatch.setattr(store_mod, "_write_group", real)
    assert store.read_bytes() == before
    assert not list(tmp_path.glob(".predictions.h5.tmp-*"))


def test_adding_a_model_appends_in_place_without_copying_the_store(tmp_path):
    # Rank 0's write must cost the model, not the store (other ranks wait for it): the file keeps
    # its inode, its old bytes stay but for a few pages of HDF5 metadata, and no copy is made.
    store = tmp_path / "predictions.h5"
    write_model(store, _preds("a", n=3000, classes=100, seed=1))
    before, inode = store.read_bytes(), store.stat().st_ino
    write_model(store, _preds("b", n=3000, classes=100, seed=2))
    after = store.read_bytes()
    assert store.stat().st_ino == inode and len(after) > len(before)
    changed = np.flatnonzero(np.frombuffer(after[:len(before)], np.uint8) != np.frombuffer(before, np.uint8))
    assert len({offset // 4096 for offset in changed}) <= 4, "more than a few metadata pages rewritten"
    assert stored_models(store) == ["a", "b"]
    assert np.array_equal(read_model(store, "a").logits[10], _preds("a", n=3000, classes=100, seed=1).logits[10])
    assert not list(tmp_path.glob(".predictions.h5.*"))


APPEND = """
import sys, numpy as np
from imnet.eval.store import ModelPredictions, write_model
for i, name in enumerate(sys.argv[2:]):
    rng = np.random.default_rng(i)
    write_model(sys.argv[1], ModelPredictions(name, [f"f{j}" for j in range(2000)], np.zeros(2000), np.arange(2000),
                                              {1: rng.standard_normal((2000, 50)).astype(np.float16)}))
"""


@pytest.mark.parametrize("crash_at", ["journal", "tail", "pages"])
def test_kill_9_inside_an_append_gives_back_the_previous_store(tmp_path, crash_at):
    # Killed after the undo journal is in place, after the new data is appended, or after the
    # metadata pages are written (before the journal is gone): the next open undoes the append.
    import os
    import signal

    store = tmp_path / "predictions.h5"
    write_model(store, _preds("a", seed=1))
    before = store.read_bytes()
    env = dict(os.environ, IMNET_STORE_CRASH_AT=crash_at)
    proc = subprocess.run([sys.executable, "-c", APPEND, str(store), "b"], env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert (tmp_path / ".predictions.h5.journal").exists()
    assert stored_models(store) == ["a"]                     # undone on open
    assert store.read_bytes() == before and not (tmp_path / ".predictions.h5.journal").exists()
    tails = sorted(tmp_path.glob(".predictions.h5.tail-*"))
    assert len(tails) == 1 and remove_stale_temp_files(store) == tails
    assert not list(tmp_path.glob(".predictions.h5.*"))
    write_model(store, _preds("b", seed=2))                  # and the store takes the model again
    assert stored_models(store) == ["a", "b"]


def test_kill_9_at_random_moments_leaves_a_readable_store_of_finished_models(tmp_path):
    import random
    import signal
    import time

    store = tmp_path / "predictions.h5"
    names = [f"m{i:02d}" for i in range(60)]
    rng = random.Random(0)
    done: list[str] = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", APPEND, str(store), *names[len(done):]])
        time.sleep(1.0 + rng.random() * 1.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        remove_stale_temp_files(store)
        assert not list(tmp_path.glob(".predictions.h5.*"))
        if store.exists():
            done = stored_models(store)
            assert done == names[:len(done)]  # the finished models, nothing half-written
            assert all(preds.logits[1].shape == (2000, 50) for preds in read_store(store))
    assert done, "no model was ever finished: the kills came too early to test anything"


def test_is_finished_needs_same_config_and_all_crop_counts(tmp_path):
    store = tmp_path / "predictions.h5"
    a = _preds("a", crops=(1, 5, 10))
    assert not is_finished(store, "a", a.config, [1])
    write_model(store, a)
    assert is_finished(store, "a", dict(a.config), [1, 10])
    assert is_finished(store, "a", dict(a.config), [1, 5, 10])
    assert not is_finished(store, "a", {**a.config, "crop_size": 64}, [1])
    assert not is_finished(store, "b", a.config, [1])
    write_model(store, _preds("c", crops=(1,)))
    assert not is_finished(store, "c", a.config, [1, 10])


@pytest.mark.parametrize("content, message", [(None, "not found"), (b"not hdf5", "not a readable HDF5"),
                                               ("plain-h5", "not an imnet predictions store")])
def test_bad_store_files(tmp_path, content, message):
    path = tmp_path / "predictions.h5"
    if content == "plain-h5":
        with h5py.File(path, "w") as f:
            f["x"] = 1
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImnetError, match=message) as err:
        read_store(path)
    assert str(path) in str(err.value)


def test_unwritable_store_location(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ImnetError, match="cannot write the predictions store") as err:
        write_model(blocker / "predictions.h5", _preds("a"))
    assert str(blocker / "predictions.h5") in str(err.value)


def test_reports_are_computed_from_the_store(tmp_path):
    store = tmp_path / "predictions.h5"
    # 4 images with known logits; a --limit style subset of a 6-image split (val indices 1..4)
    logits = np.array([[5, 1, 0], [0, 5, 1], [0, 1, 5], [5, 0, 1]], dtype=np.float16)
    preds = ModelPredictions(
        name="toy", files=[f"f{i}.JPEG" for i in range(1, 5)], labels=np.array([0, 1, 0, 2]),
        indices=np.array([1, 2, 3, 4]), logits={1: logits},
        config={"crop_size": 32, "crop_pct": 0.875, "interpolation": "bicubic"},
        info={"param_count": 11.6899, "images_per_sec": 100.0, "pass_crops": 1, "n_split": 6,
              "partial": True, "loader": "torch", "amp": "bf16", "device": "cpu"},
    )
    write_model(store, preds)
    real_path = tmp_path / "real.json"
    # split order: entry 0 and 5 are outside the limit; entry 3 (index 3) is empty -> left out
    real_path.write_text(json.dumps([[9], [0], [2], [], [2, 0], [7]]))
    rows = results_from_store(store, real_path)
    assert len(rows) == 1
    row = rows[0]
    assert (row.top1, row.top5, row.n_images) == (50.0, 100.0, 4)   # images 1, 2 right; 3, 4 wrong
    assert row.top1_err == 50.0 and row.param_count == 11.69 and row.partial
    assert (row.real_top1, row.n_real) == (pytest.approx(66.667), 3)   # images 1, 4 right, 2 wrong
    files = write_reports(rows, tmp_path, [Skipped("absent_model", "no weights found; looked in /w")])
    with files.csv.open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:9] == TIMM_COLUMNS and list(table[0]) == COLUMNS
    assert table[0]["top1"] == "50.0" and table[0]["crops"] == "1" and table[0]["interpolation"] == "bicubic"
    data = json.loads(files.json.read_text())
    assert data["partial"] is True and data["results"][0]["real_top1"] == pytest.approx(66.667)
    assert data["skipped"] == [{"model": "absent_model", "reason": "no weights found; looked in /w"}]
    md = files.markdown.read_text()
    assert "| toy | 1 | 32 |" in md and "(partial)" in md and "absent_model" in md
    assert files.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a ReaL file that does not fit the split recorded in the store
    real_path.write_text(json.dumps([[1]] * 4))
    with pytest.raises(ImnetError, match="4 ReaL label entries but the val split has 6"):
        results_from_store(store, real_path)


def test_results_md_puts_published_figures_beside_measured(tmp_path):
    """resnet18's published top-1 (torchvision: 69.758) beside a measured 1-crop row, with the difference;
    not beside 10-crop rows or overridden configs, which the published figure does not describe."""
    from imnet.eval.report import results_markdown, rows_for_model
    from imnet.zoo import get_config

    published = get_config("resnet18").published.top1
    preds = _preds("resnet18", n=4, classes=3, crops=(1, 10), labels=[0, 1, 2, 0])
    preds.logits[1] = np.eye(3, dtype=np.float16)[[0, 1, 2, 1]]      # 3 of 4 right: 75 %
    rows = rows_for_model(preds)
    assert rows[0].top1 == 75.0 and rows[0].published_top1 == published and rows[1].published_top1 is None
    md = results_markdown(rows)
    assert f"| 75.00 | {published:.2f} | {75.0 - published:+.2f} |" in md
    preds.config["overridden"] = True
    assert rows_for_model(preds)[0].published_top1 is None
