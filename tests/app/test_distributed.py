"""``distributed.nproc=2`` on CPU (gloo): the ranks stay one learner, and the run is one run.

Each test starts real processes through the launcher ``devlearn train`` uses (``devlearn/app/spawn.py``).
The functions the ranks run live at module level so the spawned processes can import them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from devlearn import distributed
from devlearn.app.launch import compose_run, normalize_overrides
from devlearn.app.spawn import start

DEVLEARN = [str(Path(sys.executable).parent / "devlearn")]
TINY = [
    "agent.n_steps=32",
    "agent.batch_size=64",
    "env.num_envs=4",  # 2 per rank
    "env.kwargs.max_steps=16",  # short episodes: several end in every rollout, at different times per rank
    "log.eval_episodes=2",
    "log.video=false",
    "log.progress_bar=false",
]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _collectives(out: str) -> None:
    """Rank r: ``equalize`` with 3 + 4r real transitions, then ``allreduce_grads`` with grads of r + 1."""
    rank = distributed.rank()
    gen = torch.Generator().manual_seed(rank)
    index = torch.arange(100 * rank, 100 * rank + 3 + 4 * rank)
    padded = distributed.equalize(index, gen)
    empty = distributed.equalize(index[: 2 * rank], gen)  # rank 0 has none: every rank skips
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]
    for p in params:
        p.grad = torch.full_like(p, rank + 1.0)
    norms = distributed.allreduce_grads(params, {"train": torch.tensor(1.0)}, {"train": torch.tensor(2.0)})
    bad_loss = torch.tensor(float("nan") if rank == 1 else 1.0)  # one rank diverged: all must roll back
    bad = distributed.allreduce_grads(params, {"train": bad_loss}, {"train": torch.tensor(2.0)})
    torch.save(
        {"padded": padded, "empty": len(empty), "grads": [p.grad for p in params], "norms": norms, "bad": bad},
        Path(out) / f"rank{rank}.pt",
    )


def test_collectives_agree_across_ranks(tmp_path, one_thread):
    start(_collectives, (str(tmp_path),), nproc=2, backend="gloo")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # the same number of transitions on both ranks; rank 0's extras are resampled from its own
    assert len(r0["padded"]) == len(r1["padded"]) == 7
    assert set(r0["padded"].tolist()) == {0, 1, 2} and r1["padded"].tolist() == list(range(100, 107))
    assert r0["empty"] == r1["empty"] == 0
    # gradients averaged: (1 + 2) / 2 everywhere, identical on both ranks (after the second call: the same)
    for g0, g1 in zip(r0["grads"], r1["grads"], strict=True):
        assert torch.equal(g0, g1) and torch.all(g0 == 1.5)
    assert r0["norms"]["train"] == r1["norms"]["train"] == 2.0
    # a non-finite loss on rank 1 makes both ranks' norms non-finite: both roll back
    assert torch.isnan(r0["bad"]["train"]) and torch.isnan(r1["bad"]["train"])


def _train_and_record(cfg, run_dir: Path, device: str, resume: bool) -> None:
    """``run._train_rank`` with each rank's parameters and counters saved after training (and before it)."""
    from devlearn.agents.developmental.agent import DevelopmentalAgent
    from devlearn.app.run import _train_rank

    learn, collect = DevelopmentalAgent.learn, DevelopmentalAgent._collect

    def recorded_learn(self, total, log, run_dir, checkpoint_every):
        before = {k: v.clone() for k, v in self.net.state_dict().items()}
        learn(self, total, log, run_dir, checkpoint_every)
        record = {
            "before": before,
            "after": self.net.state_dict(),
            "updates": self.updates,
            "num_timesteps": self.num_timesteps,
            "episodes_total": log.episodes_total,
            "own_episodes": self.own_episodes,
        }
        torch.save(record, Path(run_dir) / f"rank{distributed.rank()}.pt")

    def counting_collect(self):
        finished, shield_logs = collect(self)
        self.own_episodes = getattr(self, "own_episodes", 0) + len(finished)
        return finished, shield_logs

    DevelopmentalAgent.learn, DevelopmentalAgent._collect = recorded_learn, counting_collect
    _train_rank(cfg, run_dir, device, resume)


def test_parameters_stay_identical_across_ranks(tmp_path, one_thread):
    """After 4 updates on different envs, both ranks hold the same parameters, moved from where they began."""
    cfg, _ = compose_run(normalize_overrides([*TINY, "agent.total_timesteps=512", "distributed.nproc=2"]))
    start(_train_and_record, (cfg, tmp_path, "cpu", False), nproc=2, backend="gloo")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["updates"] == r1["updates"] == 4
    assert r0["num_timesteps"] == r1["num_timesteps"] == 512  # both ranks count the whole run's env steps
    for name, before in r0["before"].items():
        assert torch.equal(before, r1["before"][name]), f"{name} differs before training"
        assert torch.equal(r0["after"][name], r1["after"][name]), f"{name} differs across ranks after training"
    assert any(not torch.equal(r0["before"][k], r0["after"][k]) for k in r0["before"]), "nothing was learned"
    # every rank's log counts both ranks' episodes
    assert r0["episodes_total"] == r1["episodes_total"] == r0["own_episodes"] + r1["own_episodes"]
    assert r0["own_episodes"] > 0 and r1["own_episodes"] > 0
    assert (tmp_path / "results.json").is_file()  # rank 0 finished the run


def test_a_tiny_run_is_one_run_and_resumes(tmp_path):
    """`devlearn train distributed.nproc=2`: one folder, results.json counting both ranks' steps; resume continues it."""
    first = subprocess.run(
        [*DEVLEARN, "train", "distributed.nproc=2", "agent.total_timesteps=256", *TINY],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ONE_THREAD,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(4 envs, cpu, 2 processes, gloo)" in first.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["processes"] == 2
    assert results["env_steps"] == 256  # 2 ranks x 2 envs x 32 steps x 2 rollouts
    assert results["training"]["episodes"] > 0 and "train" in results["eval"]
    assert (run_dir / "checkpoint.pt").is_file() and len(list((run_dir / "tb").glob("events.*"))) == 1

    resumed = subprocess.run(
        [*DEVLEARN, "train", "distributed.nproc=2", "agent.total_timesteps=512", *TINY, "resume=true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=ONE_THREAD,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]
    again = json.loads((run_dir / "results.json").read_text())
    assert again["env_steps"] == 512 and again["resumes"] == 1
    assert again["training"]["episodes"] > results["training"]["episodes"]  # the counters continued


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["distributed.nproc=3", "env.num_envs=4"],
            "env.num_envs=4 cannot be split evenly across distributed.nproc=3 processes: make env.num_envs a "
            "multiple of 3 (e.g. env.num_envs=6).",
        ),
        (["distributed.nproc=2", "agent=ppo"], "agent=ppo does not train in several processes"),
        (["distributed.nproc=0"], "distributed.nproc=0 must be an integer >= 1."),
    ],
)
def test_refusals_are_one_line_and_leave_no_folder(tmp_path, args, message):
    out = subprocess.run([*DEVLEARN, "train", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("devlearn: error: "), out.stderr
    assert message in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()


def test_torchrun_is_refused_with_the_command_to_use(tmp_path):
    out = subprocess.run(
        [*DEVLEARN, "train"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "WORLD_SIZE": "2", "RANK": "0"},
    )  # fmt: skip
    assert out.returncode == 2 and "devlearn train distributed.nproc=2" in out.stderr, out.stderr


def test_a_distributed_config_stays_resumable_alone():
    """``distributed.*`` is free on resume: the same envs split over another number of processes."""
    from devlearn.app.resume import differences

    alone, _ = compose_run([])
    two, _ = compose_run(["distributed.nproc=2"])
    assert differences(alone, two) == {}
    # an old run's stored config has no distributed key at all
    old = OmegaConf.create({k: v for k, v in OmegaConf.to_container(alone).items() if k != "distributed"})
    assert differences(old, two) == {}
