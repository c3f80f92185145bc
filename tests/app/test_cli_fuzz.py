"""CLI fuzz: over a hundred distinct bad inputs to every command, each answered in one line, none accepted.

Each case runs ``devlearn``'s ``main`` in this process (a subprocess per case would take minutes): a refusal is
``SystemExit(2)`` with exactly one line on stderr, ``devlearn: error: ...``, and no run folder; anything else
(an exception escaping ``main``: a traceback; training or grokking starting: a silent acceptance) fails the
case. ``bench/soak.py --fuzz`` runs the same cases as real ``devlearn`` processes.
"""

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from devlearn.app import cli
from devlearn.app.launch import compose_run

TINY = ["agent.n_steps=32", "agent.batch_size=64", "env.num_envs=4", "log.eval_episodes=2", "log.video=false"]

# (argv, a phrase the answer must contain); {good}, {mismatch}, ... name the run folders of the `runs` fixture
BAD_INPUTS: list[tuple[list[str], str]] = [
    # values out of range or of the wrong type
    (["train", "seed=-1"], "seed=-1 must be an integer >= 0"),
    (["train", "seed=abc"], "seed=abc must be an integer"),
    (["train", "seed=1.5"], "seed=1.5 must be an integer"),
    (["train", "seed=true"], "seed=true must be an integer"),
    (["train", "seed=4294967296"], "beyond the limit of 4,294,967,295"),
    (["train", "seed=0,1,x"], "seed=0,1,x must be an integer"),
    (["train", "seed="], "must be an integer"),
    (["train", "agent.total_timesteps=-5"], "agent.total_timesteps=-5 must be > 0"),
    (["train", "agent.total_timesteps=0"], "must be > 0"),
    (["train", "agent.total_timesteps=lots"], "must be an integer"),
    (["train", "agent.total_timesteps=[1,2]"], "must be an integer"),
    (["train", "agent.total_timesteps=1e5"], "(write agent.total_timesteps=100000)"),
    (["train", "agent.total_timesteps=99999999999999999999"], "beyond the limit of 1,000,000,000,000"),
    (["train", "agent.total_timesteps=true"], "must be an integer"),
    (["train", "agent.learning_rate=-1"], "must be > 0"),
    (["train", "agent.learning_rate=0"], "must be > 0"),
    (["train", "agent.learning_rate=fast"], "must be a number"),
    (["train", "agent.learning_rate=1e-3,x"], "must be a number"),
    (["train", "agent.learning_rate=nan"], "agent.learning_rate"),
    (["train", "agent.n_steps=0"], "agent.n_steps=0 must be > 0"),
    (["train", "agent.n_steps=x"], "must be an integer"),
    (["train", "agent.n_steps=2000000"], "beyond the limit"),
    (["train", "agent.batch_size=-64"], "must be > 0"),
    (["train", "agent.n_epochs=0"], "must be > 0"),
    (["train", "agent.n_epochs=100000"], "beyond the limit"),
    (["train", "agent.gamma=2"], "agent.gamma must be in (0, 1]"),
    (["train", "agent.gamma=-0.1"], "agent.gamma must be in (0, 1]"),
    (["train", "agent.gae_lambda=1.5"], "agent.gae_lambda in [0, 1]"),
    (["train", "agent.clip_range=0"], "must be > 0"),
    (["train", "agent.shield_tau=5"], "must be in [0, 1]"),
    (["train", "agent.shield_tau=-1"], "must be in [0, 1]"),
    (["train", "agent.shield_tau=high"], "must be a number"),
    (["train", "agent.core.n_heads=3"], "divisible by agent.core.n_heads=3"),
    (["train", "agent.core.n_heads=0"], "must be > 0"),
    (["train", "agent.core.d_model=0"], "must be > 0"),
    (["train", "agent.core.d_model=100000"], "beyond the limit"),
    (["train", "agent.core.window=0"], "must be > 0"),
    (["train", "agent.world_model.k=0"], "must be > 0"),
    (["train", "agent.world_model.batch_fraction=0"], "must be in (0, 1]"),
    (["train", "agent.world_model.batch_fraction=2"], "must be in (0, 1]"),
    (["train", "agent.intrinsic_coef=-1"], "must be >= 0"),
    (["train", "agent.intrinsic=novelyt"], "Did you mean 'novelty'?"),
    (["train", "agent.novelty_bits=64"], "must be in 1..63"),
    (["train", "agent.novelty_bits=0"], "must be in 1..63"),
    (["train", "agent.weight_decay=-1"], "must be >= 0"),
    (["train", "agent.world_model_coef=-1"], "must be >= 0"),
    (["train", "env.num_envs=0"], "must be > 0"),
    (["train", "env.num_envs=-4"], "must be > 0"),
    (["train", "env.num_envs=many"], "must be an integer"),
    (["train", "env.num_envs=100000"], "beyond the limit of 65,536"),
    (["train", "env.vectorization=gpu"], "env.vectorization='gpu' is not allowed"),
    (["train", "env.eval_split=test"], "env.eval_split='test' is not allowed"),
    (["train", "env.kwargs.slip=2"], "slip must be a probability in [0, 1)"),
    (["train", "env.kwargs.slip=-0.5"], "slip must be a probability"),
    (["train", "env.kwargs.slip=slippy"], "slip"),
    (["train", "env.kwargs.split=test"], "env.kwargs.split='test' is not allowed"),
    (["train", "env.kwargs.max_stepz=10"], "Did you mean 'max_steps'?"),
    (["train", "env.id=devlearn/CliffEdg-v0"], "Did you mean"),
    (["train", "env.id=nope:Env-v0"], "Cannot import module 'nope'"),
    (["train", "env.id="], "Unknown environment id ''"),
    (["train", "env=clif"], "clif"),
    (["train", "env=gymm"], "gymm"),
    (["train", "env=gym"], "env=gym needs env.id"),
    (["train", "env=gym", "env.id=Pendulum-v1"], "needs a Discrete action space"),
    (["train", "agent=ppx"], "agent='ppx' is not allowed"),
    (["train", "agent=ppo", "agent.hidden_sizes=abc"], "agent.hidden_sizes"),
    (["train", "memory=hybird"], "Did you mean 'hybrid'?"),
    (["train", "agent=ppo", "memory=ssm"], "agent=ppo has none"),
    (["train", "memory=hybrid", "agent.memory.k=0"], "agent.memory.k=0 must be > 0"),
    (["train", "memory=hybrid", "agent.memory.capacity=1000000000"], "GiB"),
    (["train", "memory=hybrid", "agent.memory.gist_horizon=-1"], "must be >= 0"),
    (["train", "agent=ablation", "agent.memory.write=surprise"], "needs a world model"),
    (["train", "agent=ppo", "agent.intrinsic=surprise", "agent.intrinsic_coef=0.1"], "needs a world model"),
    (["train", "schedule=cosin"], "Did you mean 'cosine'?"),
    (["train", "schedule=sleep"], "agent.weight_decay=0"),
    (["train", "agent=ppo", "schedule=cosine"], "trains with its own LR"),
    (["train", "log.eval_episodes=0"], "must be >= 1"),
    (["train", "log.eval_episodes=-1"], "must be >= 1"),
    (["train", "log.video_max_steps=0"], "must be > 0"),
    (["train", "log.video=yes"], "log.video=yes must be true or false"),
    (["train", "log.progress_bar=2"], "must be true or false"),
    (["train", "deterministic=2"], "deterministic=2 must be true or false"),
    (["train", "deterministic=yes"], "must be true or false"),
    (["train", "device=gpu"], "device='gpu' is not allowed"),
    (["train", "resume=maybe"], "Allowed values: false, true, force"),
    (["train", "max_rollbacks=0"], "must be >= 1"),
    (["train", "checkpoint_every=0"], "must be > 0"),
    (["train", "checkpoint_every_s=0"], "checkpoint_every_s=0.0 must be > 0"),
    (["train", "checkpoint_every_s=-1"], "must be > 0"),
    (["train", "checkpoint_every_s=1e9"], "beyond the limit"),
    (["train", "objective=foo"], "objective='foo' is not allowed"),
    (["train", "distributed.nproc=0"], "distributed.nproc=0 must be an integer >= 1"),
    (["train", "distributed.nproc=2", "agent=ppo"], "does not train in several processes"),
    (["train", "distributed.nproc=3"], "cannot be split evenly"),
    (["train", "distributed.backend=mpi"], "distributed.backend='mpi' is not allowed"),
    # keys that do not exist, added with + or ++, deleted, or no key at all
    (["train", "agent.total_timestep=5"], "Did you mean 'agent.total_timesteps'?"),
    (["train", "+agent.total_timestep=5"], "Did you mean 'agent.total_timesteps'?"),
    (["train", "++agent.total_timestep=5"], "Did you mean 'agent.total_timesteps'?"),
    (["train", "+foo=1"], "Unknown config key 'foo'"),
    (["train", "agent=ppo", "agent.shield_tau=0.1"], "it belongs to agent=developmental"),
    (["train", "agent.nonexistent.deep=1"], "Unknown config key 'agent.nonexistent.deep'"),
    (["train", "log.videos=false"], "Did you mean 'log.video'?"),
    (["train", "~seed"], "cannot be deleted"),
    (["train", "~agent"], "cannot be deleted"),
    (["train", "seed"], "'seed' is not an override"),
    (["train", "=5"], "Unknown config key ''"),
    (["train", "-m", "--cfg", "job"], "--cfg and -m cannot be combined"),
    # run folders: missing, someone else's, unwritable
    (["train", "resume=true"], "no run of env.id=devlearn/CliffEdge-v0"),
    (["train", "hydra.run.dir={root}/nope", "resume=true"], "does not exist, so resume=true has nothing"),
    (["train", "hydra.run.dir={nockpt}", "resume=true"], "holds no checkpoint"),
    (["train", "agent=ppo", *TINY, "hydra.run.dir={good}"], "already holds a run"),
    (["train", "hydra.run.dir={afile}/run"], "is a file, not a folder"),
    (["train", "hydra.run.dir=/proc/devlearn-run"], "cannot be created"),
    (["train", "device=cuda"], "no CUDA device is available"),
    # devlearn eval
    (["eval"], "devlearn eval takes run_dir=PATH"),
    (["eval", "run_dir={root}/nope"], "does not exist"),
    (["eval", "run_dir={nockpt}"], "is not a devlearn run with a checkpoint"),
    (["eval", "run_dir={good}", "split=test"], "split='test' is not allowed"),
    (["eval", "run_dir={good}", "episodes=0"], "episodes=0 must be >= 1"),
    (["eval", "run_dir={good}", "episodes=x"], "episodes='x' must be an integer"),
    (["eval", "run_dir={good}", "seed=x"], "seed='x' must be an integer"),
    (["eval", "run_dir={good}", "bogus=1"], "devlearn eval takes"),
    (["eval", "run_dir={good}", "extra"], "devlearn eval takes"),
    (["eval", "run_dir={good}", "dynamic_lr=1"], "add dynamic_eval=true"),
    (["eval", "run_dir={good}", "dynamic_eval=maybe"], "must be true or false"),
    (["eval", "run_dir={good}", "dynamic_eval=true"], "needs the developmental agent's world model"),
    (["eval", "run_dir={corrupt}"], "is not valid YAML"),
    (["eval", "run_dir={mismatch}"], "was trained on devlearn/CliffEdge-v0 (observation space"),
    (["eval", "run_dir={truncated}"], "is truncated or corrupt"),
    # devlearn report, envs, grok, and no such command
    (["report"], "takes one folder, got 0"),
    (["report", "{root}/a", "{root}/b"], "takes one folder, got 2"),
    (["report", "{root}", "--bogus"], "Unknown option '--bogus'"),
    (["report", "{root}", "--resamples=x"], "must be an integer"),
    (["report", "{root}", "--resamples=5"], "too few"),
    (["report", "{root}/nope"], "is not a folder"),
    (["report", "{empty}"], "No runs under"),
    (["report", "{root}", "--env"], "--env needs a value"),
    (["envs", "--bogus"], "devlearn envs takes only --all"),
    (["grok", "p=-1"], "p=-1 must be >= 3"),
    (["grok", "op=pow"], "op='pow' is not allowed"),
    (["grok", "steps=abc"], "steps=abc must be an integer"),
    (["grok", "train_fraction=2"], "must be in (0, 1)"),
    (["grok", "device=gpu"], "Did you mean 'cpu'?"),
    (["grok", "schedule=nope"], "schedule='nope' is not allowed"),
    (["grok", "foo=1"], "Unknown config key 'foo' for devlearn grok"),
    (["grok", "tensorboard=2"], "must be true or false"),
    (["trian"], "Did you mean 'train'?"),
]


def make_runs(root: Path) -> dict[str, Path]:
    """Run folders under ``root`` to point the bad inputs at: a real (untrained) PPO run, and that run spoilt in
    each way (``bench/soak.py`` builds the same for its subprocess fuzz)."""
    # deferred imports: SB3 and torch load once for the module, not at collection
    from devlearn.agents import make_agent
    from devlearn.app.run import trained_on
    from devlearn.envs.vector.make import make_vector_env
    from devlearn.logging.runlog import RunLog

    cfg, _ = compose_run(["agent=ppo", *TINY])
    folders = {name: root / name for name in ("good", "mismatch", "corrupt", "truncated", "nockpt", "empty")}
    for name, folder in folders.items():
        (folder / ".hydra").mkdir(parents=True)
        if name != "empty":
            OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    env = make_vector_env(cfg.env.id, 4)
    agent = make_agent(cfg.agent, env, 0, "cpu", writer=None)
    agent.runlog = RunLog(None, 64, progress=False)
    agent.runlog.trained_on = trained_on(cfg, env)
    agent.save(folders["good"])
    env.close()
    for name in ("mismatch", "corrupt"):
        shutil.copy(folders["good"] / "checkpoint.zip", folders[name])
    OmegaConf.save(compose_run(["agent=ppo", "env=carwash", *TINY])[0], folders["mismatch"] / ".hydra" / "config.yaml")
    (folders["corrupt"] / ".hydra" / "config.yaml").write_text("env:\n  id: [devlearn/CliffEdge-v0\nagent: {name: ppo\n")
    data = (folders["good"] / "checkpoint.zip").read_bytes()
    (folders["truncated"] / "checkpoint.zip").write_bytes(data[: len(data) // 2])
    shutil.rmtree(folders["empty"] / ".hydra")
    (root / "afile").write_text("a file where a folder is expected\n")
    return {"root": root, "afile": root / "afile", **folders}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return make_runs(tmp_path_factory.mktemp("fuzz-runs"))


def accepted(*args, **kwargs):
    raise AssertionError("accepted: the command went on to run")


@pytest.mark.parametrize("argv, phrase", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_answered_in_one_line(argv, phrase, runs, tmp_path, monkeypatch, capsys):
    if argv == ["train", "device=cuda"]:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible: device=cuda is right here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_train_main", accepted)
    monkeypatch.setattr(cli, "_grok_main", accepted)
    before = {p.name for p in runs["root"].iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([a.format(**runs) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("devlearn: error: "), lines
    assert phrase.format(**runs) in lines[0], lines[0]
    assert not list(tmp_path.iterdir()), "a refused command left a folder behind"
    assert {p.name for p in runs["root"].iterdir()} == before


def test_the_fuzz_has_a_hundred_distinct_inputs():
    assert len({tuple(argv) for argv, _ in BAD_INPUTS}) == len(BAD_INPUTS) >= 100
