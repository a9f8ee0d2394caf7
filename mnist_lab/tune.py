"""`python -m mnist_lab.tune hparams_search=NAME [overrides]`: an Optuna search over Hydra overrides.

Each trial composes the same Hydra config as `python -m mnist_lab`, with the trial's values as overrides,
and trains it in its own directory. Optuna's SQLite storage makes the search resumable: run the same
command again and it continues until `n_trials` trials have finished. (hydra-optuna-sweeper would do this
from the command line, but its releases pin optuna < 3.)
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from mnist_lab.errors import one_line_errors
from mnist_lab.run_dirs import record_failure
from mnist_lab.train import train

log = logging.getLogger("mnist_lab.tune")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def suggest(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec["choices"]))
    raise ValueError(f"hparams_search.params.{name}: unknown type {kind!r} (float, int or categorical)")


def search(search_cfg: DictConfig, base_overrides: list[str], output_dir: Path) -> optuna.Study:
    """Run trials until the study holds `n_trials` finished ones; return the study."""
    storage = search_cfg.storage
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=search_cfg.study_name,
        storage=storage,
        direction=search_cfg.direction,
        pruner=instantiate(search_cfg.pruner),
        load_if_exists=True,
    )
    # A seeded sampler that resumes must not replay the suggestions of the first session.
    seed = search_cfg.sampler.get("seed")
    study.sampler = instantiate(
        search_cfg.sampler, **({"seed": seed + len(study.trials)} if seed is not None else {})
    )
    params = OmegaConf.to_container(search_cfg.params)

    def objective(trial: optuna.Trial) -> float:
        overrides = [f"{name}={suggest(trial, name, spec)}" for name, spec in params.items()]
        trial_dir = output_dir / f"trial_{trial.number}"
        cfg = compose("config", [*base_overrides, *overrides, f"paths.output_dir={trial_dir}"])

        def failed(error: str) -> None:  # diverged, bad data, a setting that cannot work: the study goes on
            record_failure(trial_dir, error)
            trial.set_user_attr("error", error)

        with one_line_errors(failed):
            return train(cfg, [PyTorchLightningPruningCallback(trial, monitor="val/acc")])["val/acc_best"]
        return float("nan")  # Optuna marks the trial failed

    done = sum(t.state in FINISHED for t in study.trials)
    if done:
        log.info(
            "resuming study %s: %d of %d trials finished", search_cfg.study_name, done, search_cfg.n_trials
        )
    remaining = search_cfg.n_trials - done
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    return study


def best_overrides(study: optuna.Study) -> str:
    return " ".join(f"{name}={value}" for name, value in study.best_params.items())


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="config")
def main(cfg: DictConfig) -> None:
    if "hparams_search" not in cfg:
        sys.exit("error: choose a search space, e.g. python -m mnist_lab.tune hparams_search=mlp_optuna")
    overrides = [
        o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hparams_search")
    ]
    study = search(cfg.hparams_search, overrides, Path(cfg.paths.output_dir))
    failed = sum(t.state == TrialState.FAIL for t in study.trials)
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        sys.exit(f"error: no trial of {study.study_name} completed ({failed} failed; see the log above)")
    if failed:
        log.warning("%d trials failed (failed.json in their directories); the best is of the others", failed)
    log.info("best val/acc %.4f in trial %d", study.best_value, study.best_trial.number)
    print(f"best: python -m mnist_lab {' '.join(overrides)} {best_overrides(study)}".replace("  ", " "))


if __name__ == "__main__":
    main()
