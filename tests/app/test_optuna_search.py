"""The Optuna example search (configs/hydra/sweeper/cliff_search.yaml) at a tiny budget, and its errors."""

import json

import yaml
from test_sweeps import TINY, devlearn, plugin, sweep_dir


def test_optuna_example_search_at_a_tiny_budget(tmp_path):
    plugin("hydra_optuna_sweeper")
    budget = [
        "hydra.sweeper.n_trials=2",
        "agent.total_timesteps=64",
        "agent.n_steps=16",
        "agent.batch_size=32",
        "agent.n_epochs=1",
        "agent.core.d_model=16",
        "agent.core.n_layers=1",
        "agent.core.n_heads=1",
        "env.num_envs=2",
        "log.eval_episodes=1",
        "log.video=false",
        "log.progress_bar=false",
    ]
    # the example maximizes heldout/return, which is 0 for every run at this budget; optimizing steps/s instead
    # (a figure that differs between runs) shows that Optuna receives the very figure each run wrote
    objective = "hydra.sweeper.params.objective=env_steps_per_second"
    out = devlearn(["train", "-m", "hydra/sweeper=cliff_search", objective, *budget], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = sweep_dir(tmp_path)
    runs = [json.loads(p.read_text()) for p in root.rglob("results.json")]
    assert len(runs) == 2 and {r["agent"] for r in runs} == {"developmental"}
    trials = [yaml.safe_load(p.read_text()) for p in root.glob("*/.hydra/overrides.yaml")]
    learning_rates = {next(o for o in t if o.startswith("agent.learning_rate=")) for t in trials}
    assert len(learning_rates) == 2  # the sweeper chose the values, one per trial
    best = yaml.safe_load((root / "optimization_results.yaml").read_text())
    # the value Optuna saw is the objective each run returned, as written in its results.json
    assert best["best_value"] == max(r["env_steps_per_second"] for r in runs)
    assert len({r["env_steps_per_second"] for r in runs}) == 2
    assert set(best["best_params"]) == {"agent.learning_rate", "agent.world_model_coef"}
    assert 1e-4 <= best["best_params"]["agent.learning_rate"] <= 3e-3


def test_optuna_without_an_objective_is_one_clear_line(tmp_path):
    plugin("hydra_optuna_sweeper")
    out = devlearn(
        [
            "train",
            "-m",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=1",
            "agent.learning_rate=interval(1e-4,1e-3)",
            *TINY,
        ],
        tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "devlearn: error: The Optuna sweeper needs a figure to optimize: add objective=NAME." in out.stderr
    assert not list(tmp_path.rglob("results.json"))
