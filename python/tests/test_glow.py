"""The Python module against the library and the command line: exact round trips, the
bits/dim of glow eval, training that lowers bits/dim, and clear errors."""
import json
import os
import subprocess

import numpy as np
import pytest

import glow

FMNIST = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


@pytest.fixture(scope="module")
def data():
    train, labels = glow.load_dataset(FMNIST, "train")
    test, _ = glow.load_dataset(FMNIST, "test")
    return train, labels, test


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, _, test = data
    events = []
    trainer = glow.Trainer(train[:2048], test_images=test[:256], depth=2, width=32, batch=32,
                           steps=50, lr=2e-3, warmup=10, eval_every=25, eval_n=256,
                           sample_every=50, n_samples=4, threads=2, callback=events.append)
    before = trainer.evaluate()
    assert trainer.run() == 50
    after = trainer.evaluate()
    path = str(tmp_path_factory.mktemp("py") / "py.glow")
    trainer.save(path)
    return {"trainer": trainer, "before": before, "after": after, "events": events, "path": path}


def test_load_dataset(data):
    train, labels, test = data
    assert train.shape == (60000, 28, 28, 1) and train.dtype == np.uint8
    assert labels.shape == (60000,) and labels.max() == 9
    assert test.shape == (10000, 28, 28, 1)


def test_trainer_lowers_bits_per_dim(trained):
    assert trained["after"] < trained["before"] - 0.5, (trained["before"], trained["after"])
    kinds = [e["kind"] for e in trained["events"]]
    assert kinds.count("log") == 5 and kinds.count("eval") == 2 and kinds.count("sample") == 1
    log = [e for e in trained["events"] if e["kind"] == "log"]
    assert log[-1]["step"] == 50 and log[-1]["train_bpd"] < log[0]["train_bpd"]
    sample = [e for e in trained["events"] if e["kind"] == "sample"][0]
    assert sample["samples"].shape == (4, 28, 28, 1)
    # The fields after the per-level statistics are where glow.h puts them (a struct that
    # drifted from glow.h reads garbage here).
    last_eval = [e for e in trained["events"] if e["kind"] == "eval"][-1]
    assert last_eval["test_n"] == 256 and abs(last_eval["test_bpd"] - trained["after"]) < 1e-9


def test_round_trip_is_exact_on_1000_test_images(trained, data):
    model = glow.Model.load(trained["path"])
    x = data[2][:1000]
    z = model.encode(x)
    assert z.dtype == np.float32 and z.shape == (1000, 784)
    assert np.array_equal(model.decode(z), x)


def test_bits_per_dim_agrees_with_glow_eval(trained, data):
    model = glow.Model.load(trained["path"])
    bpd = model.bits_per_dim(data[2][:500])
    assert bpd.shape == (500,) and np.all(np.isfinite(bpd))
    out = subprocess.run([os.path.join(ROOT, "glow"), "eval", "--checkpoint", trained["path"],
                          "--n", "500", "--json"], capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout)["bpd"]
    assert abs(bpd.mean() - cli) < 1e-6, (bpd.mean(), cli)


def test_sample_and_save(trained, tmp_path):
    model = trained["trainer"].model
    a = model.sample(6, temperature=0.7, seed=3)
    assert a.shape == (6, 28, 28, 1) and a.dtype == np.uint8
    assert np.array_equal(a, model.sample(6, temperature=0.7, seed=3))
    path = str(tmp_path / "weights.glow")
    model.save(path)
    again = glow.Model.load(path, average=False)
    assert again.config["depth"] == 2 and again.config["coupling"] == "affine"
    assert np.array_equal(again.sample(6, temperature=0.7, seed=3), a)


def test_resume_continues(trained, data, tmp_path):
    train, _, test = data
    path = str(tmp_path / "resume.glow")
    t = glow.Trainer(train[:512], depth=1, width=8, batch=32, steps=4, eval_every=0,
                     sample_every=0, checkpoint=path)
    t.run(2)
    t.save()
    resumed = glow.Trainer(train[:512], checkpoint=path, resume=True, steps=4, eval_every=0,
                           sample_every=0)
    assert resumed.step_count == 2 and resumed.run() == 4


def test_bad_input(trained):
    model = trained["trainer"].model
    with pytest.raises(ValueError, match="uint8"):
        model.encode(np.zeros((2, 28, 28, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.encode(np.zeros((2, 32, 32, 1), dtype=np.uint8))
    with pytest.raises(glow.GlowError, match="/nonexistent.glow"):
        glow.Model.load("/nonexistent.glow")
    with pytest.raises(ValueError, match="coupling"):
        glow.Trainer(np.zeros((64, 8, 8, 1), dtype=np.uint8), coupling="cubic")


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "p.png"
    glow.plot(path, {"a": [1.0, 2.0, 3.0], "b": [3.0, float("nan"), 1.0]}, x=[4, 8, 16],
              title="memory")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    with pytest.raises(ValueError):
        glow.plot(path, {"a": [1.0], "b": [1.0, 2.0]})
    with pytest.raises(glow.GlowError):
        glow.plot(path, {"a": [1.0, 2.0]}, width=10)
