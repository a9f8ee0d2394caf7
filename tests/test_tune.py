from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module
from optuna.trial import TrialState

from mnist_lab import tune
from tests.conftest import run_cli


def search_config(tmp_path: Path, n_trials: int):
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        cfg = compose(
            "config",
            [
                "hparams_search=mlp_optuna",
                f"hparams_search.n_trials={n_trials}",
                f"paths.output_root={tmp_path}",
            ],
        )
    return cfg.hparams_search


def test_interrupted_search_resumes_to_the_requested_trial_count(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = [f"data.root={tiny_root}", "data.val_size=20", "trainer.max_epochs=2", "trainer.accelerator=cpu"]
    base += ["trainer.limit_train_batches=2", "logger=none", "model.hidden=64"]
    real_train, calls = tune.train, []

    def interrupted_on_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(tune, "train", interrupted_on_second_trial)
    search_cfg = search_config(tmp_path, n_trials=3)
    with initialize_config_module("mnist_lab.conf", version_base="1.3"), pytest.raises(KeyboardInterrupt):
        tune.search(search_cfg, base, tmp_path / "run1")
    assert (tmp_path / "optuna.db").exists(), "the study must be stored in SQLite"

    monkeypatch.setattr(tune, "train", real_train)
    with initialize_config_module("mnist_lab.conf", version_base="1.3"):
        study = tune.search(search_cfg, base, tmp_path / "run2")

    states = [t.state for t in study.trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 3
    assert len(states) == 4, "one interrupted trial plus three finished ones"
    reloaded = optuna.load_study(study_name=search_cfg.study_name, storage=search_cfg.storage)
    assert len(reloaded.trials) == 4
    assert tune.best_overrides(study).startswith("optimizer.lr=")
    # the first session finished trial 0 and was interrupted in trial 1; the second ran trials 2 and 3
    sessions = {0: "run1", 2: "run2", 3: "run2"}
    finished = {t.number for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert finished == set(sessions)
    best = study.best_trial.number
    assert (tmp_path / sessions[best] / f"trial_{best}" / "results.json").exists()
    assert not list(tmp_path.glob("run*/trial_1/results.json")), "the interrupted trial wrote no results"


def test_a_failed_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, real_data_root: Path) -> None:
    """Through the command: one learning rate of the search space diverges, the other trains."""
    done = run_cli(
        tmp_path,
        real_data_root,
        "hparams_search=mlp_optuna",
        "hparams_search.n_trials=3",
        "~hparams_search.params",
        "+hparams_search.params={optimizer.lr:{type:categorical,choices:[1000000.0,0.001]}}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=8",
        "trainer.limit_val_batches=2",
        "logger=none",
        tool="mnist_lab.tune",
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="mlp_optuna", storage=f"sqlite:///{tmp_path / 'out' / 'optuna.db'}")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and len(failed) < 3 and len(study.trials) == 3
    assert all(t.params["optimizer.lr"] == 1e6 for t in failed)
    assert f"{len(failed)} trials failed" in output and "best: python -m mnist_lab" in output
    assert "optimizer.lr=0.001" in output.split("best: ")[-1]
    (record,) = (tmp_path / "out" / "runs").glob(f"*/trial_{failed[0].number}/failed.json")
    assert "Lower optimizer.lr (now 1000000.0)" in record.read_text()
    assert "Traceback" not in output
