"""The `devlearn` command as a user runs it: train, eval, envs, and errors that name what is allowed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

DEVLEARN = [str(Path(sys.executable).parent / "devlearn")]
TINY = [
    "agent.total_timesteps=512",
    "agent.n_steps=64",
    "agent.batch_size=64",
    "env.num_envs=4",
    "log.eval_episodes=4",
]


def run(args, cwd, check=True):
    out = subprocess.run(DEVLEARN + args, cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(
            f"devlearn {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return out


@pytest.fixture(scope="module")
def cliff_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("train")
    out = run(["train", "env=cliff", "agent=ppo", *TINY], cwd)
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir, out.stdout


def test_train_writes_model_results_and_tensorboard(cliff_run):
    run_dir, stdout = cliff_run
    assert (run_dir / "checkpoint.zip").is_file()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["env"] == "devlearn/CliffEdge-v0" and results["env_steps"] >= 512
    assert set(results["eval"]) == {"train", "heldout"}
    assert set(results["eval_sampled"]) == {"train", "heldout"}  # argmax in "eval", sampled actions here
    for split in ("train", "heldout"):
        for table in (results["eval"], results["eval_sampled"]):
            assert table[split]["episodes"] == 4
            assert 0.0 <= table[split]["catastrophe_rate"] <= 1.0
            assert table[split]["success_rule"] == "info"  # CliffEdge reports info["success"]
            assert "catastrophes_per_success" in table[split]
    assert "catastrophe_rate" in stdout and "heldout" in stdout  # the console table
    assert "heldout argmax" in stdout and "heldout sampled" in stdout
    assert "success: info['success'] (set by the env)" in stdout


def test_tensorboard_has_namespaced_scalars_and_a_rollout_video(cliff_run):
    run_dir, _ = cliff_run
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "rollout/ep_rew_mean",
        "rollout/catastrophe_rate",
        "rollout/cost",
        "rollout/success_rate",
        "time/fps",
    ):
        assert tag in scalars
    assert "eval/heldout/catastrophe_rate" in scalars and "eval_sampled/heldout/success" in scalars
    assert not [t for t in scalars if t.startswith("hparam/")]  # the HParams tab points at eval/*, no copies
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert "rollout/video" in events.Tags()["images"]
    gif = events.Images("rollout/video")[-1].encoded_image_string
    assert gif[:6] in (b"GIF87a", b"GIF89a")


def test_eval_on_heldout_writes_json(cliff_run):
    run_dir, _ = cliff_run
    out = run(["eval", f"run_dir={run_dir}", "split=heldout", "episodes=3"], run_dir)
    assert "heldout" in out.stdout
    result = json.loads((run_dir / "eval-heldout.json").read_text())
    assert result["episodes"] == 3 and result["split"] == "heldout"
    assert {"return", "success", "catastrophe_rate", "cost", "catastrophes_per_success"} <= set(result)
    assert result["sampled"]["episodes"] == 3 and "heldout sampled" in out.stdout


def test_evaluate_run_takes_env_arguments_that_replace_the_runs(cliff_run):
    """``env_kwargs``: the trained agent on a changed env (here episodes cut at 3 steps; bench/inbox_lengths.py: longer inboxes)."""
    from devlearn.app.evaluate_run import evaluate_run

    run_dir, _ = cliff_run
    short = evaluate_run(run_dir, "heldout", episodes=2, env_kwargs={"max_steps": 3})
    assert short["episodes"] == 2 and short["length"] <= 3


def test_tensorboard_reads_the_run(cliff_run):
    run_dir, _ = cliff_run
    out = subprocess.run(
        [str(Path(sys.executable).parent / "tensorboard"), "--inspect", "--logdir", str(run_dir.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "rollout/catastrophe_rate" in out.stdout + out.stderr


def test_any_gymnasium_id_trains(tmp_path):
    # A MiniGrid id: its Dict observation carries a Text mission that SB3 cannot take; devlearn adapts it.
    run(["train", "env=gym", "env.id=MiniGrid-LavaGapS7-v0", *TINY], tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert set(json.loads((run_dir / "results.json").read_text())["eval"]) == {"train"}


def test_text_env_logs_a_transcript(tmp_path):
    run(["train", "env=inbox", "agent=ppo", "env.kwargs.num_emails=10", *TINY], tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert "rollout/transcript/text_summary" in events.Tags()["tensors"]
    transcript = events.Tensors("rollout/transcript/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "INSTRUCTION" in transcript


def test_transcript_shows_what_memory_retrieved(tmp_path):
    """With a retrieval store, the Inbox transcript lists the steps each action read, step 0 (the instruction) among them."""
    run(["train", "env=inbox", "memory=retrieval", "env.kwargs.num_emails=10", *TINY], tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    transcript = events.Tensors("rollout/transcript/text_summary")[-1].tensor_proto.string_val[0].decode()
    memory = transcript[transcript.index("MEMORY: the steps retrieved") :]
    instruction = transcript.split("INSTRUCTION (step 0): ", 1)[1].split("\n", 1)[0]
    blocks = memory.split("\nstep ")[1:]  # one per action: "t: ...\n    <- step s: what it saw then ..."
    step_1 = next(b for b in blocks if b.startswith("1:")).strip("`\n").splitlines()[1:]
    # the first action after the instruction can read nothing else, and reads it verbatim
    assert [line.strip()[:70] for line in step_1] == [f"<- step 0: {' '.join(instruction.split())}"[:70]]


def test_intrinsic_surprise_without_world_model_is_refused(tmp_path):
    args = ["train", "agent.world_model_coef=0", "agent.intrinsic=surprise", "agent.intrinsic_coef=0.5", *TINY]
    out = run(args, tmp_path, check=False)
    assert out.returncode == 2 and "intrinsic_coef > 0 needs agent.world_model_coef > 0" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["agent=ppo", "agent.shield_tau=0.1"], "Unknown config key 'agent.shield_tau' for agent=ppo (it belongs to agent=developmental)"),
        (["agent=ablation", "agent.shield_tau=0.5"], "Unknown config key 'agent.shield_tau' for agent=ablation"),
        (["agent=ppo", "agent.novelty_bits=16"], "Unknown config key 'agent.novelty_bits' for agent=ppo"),
        (["agent=ablation", "agent.world_model.k=2"], "Allowed keys here: agent.batch_size"),
        (["-m", "agent=developmental,ppo", "agent.core.window=2"], "for agent=ppo (it belongs to agent=developmental / agent=ablation)"),
        (["agent=ppx"], "agent='ppx' is not allowed. Did you mean 'ppo'?"),
    ],
)
def test_a_key_of_another_agent_is_refused(tmp_path, args, message):
    out = run(["train", *args], tmp_path, check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run folder exists


@pytest.mark.parametrize("command", [[], ["--help"], ["train", "--help"], ["eval", "--help"], ["envs", "--help"]])
def test_help_works_everywhere(tmp_path, command):
    out = run([*command], tmp_path)
    assert out.returncode == 0 and ("usage" in out.stdout.lower() or "powered by Hydra" in out.stdout)


def test_eval_rejects_a_non_number(tmp_path):
    out = run(["eval", f"run_dir={tmp_path}", "episodes=many"], tmp_path, check=False)
    assert out.returncode == 2 and "episodes='many' must be an integer" in out.stderr


def test_unknown_key_names_the_allowed_keys(tmp_path):
    out = run(["train", "agent.total_timestep=5"], tmp_path, check=False)
    assert out.returncode == 2
    assert "Unknown config key 'agent.total_timestep' for agent=developmental. Did you mean 'agent.total_timesteps'?" in out.stderr
    assert "agent.learning_rate" in out.stderr


def test_bad_value_names_the_allowed_values(tmp_path):
    out = run(["train", "device=gpu", *TINY], tmp_path, check=False)
    assert out.returncode == 2
    assert "device='gpu' is not allowed" in out.stderr and "Allowed values: auto, cpu, cuda" in out.stderr
    out = run(["train", "env.kwargs.split=test", *TINY], tmp_path, check=False)
    assert "env.kwargs.split='test' is not allowed" in out.stderr and "train, heldout" in out.stderr


def test_bad_agent_sizes_are_named(tmp_path):
    out = run(["train", "agent.core.n_heads=3", *TINY], tmp_path, check=False)
    assert (
        out.returncode == 2
        and "agent.core.d_model=64 must be divisible by agent.core.n_heads=3" in out.stderr
    )
    out = run(["train", "agent.core.window=0", *TINY], tmp_path, check=False)
    assert out.returncode == 2 and "agent.core.window=0 must be > 0" in out.stderr


def test_bad_env_choice_lists_the_options(tmp_path):
    out = run(["train", "env=clif"], tmp_path, check=False)
    assert out.returncode != 0
    assert "Could not find 'env/clif'" in out.stderr and "cliff" in out.stderr


def test_wrong_type_names_the_key(tmp_path):
    out = run(["train", "agent.n_steps=many"], tmp_path, check=False)
    assert out.returncode != 0 and "agent.n_steps" in out.stderr


def test_envs_lists_every_bundled_env(tmp_path):
    out = run(["envs"], tmp_path)
    for env_id in (
        "devlearn/CliffEdge-v0",
        "devlearn/CarWash-v0",
        "devlearn/Inbox-v0",
        "devlearn/Bystanders-v0",
    ):
        assert env_id in out.stdout
    assert "pettingzoo" in out.stdout and "batched twin" in out.stdout


def test_unknown_command_suggests(tmp_path):
    out = run(["trian"], tmp_path, check=False)
    assert out.returncode == 2 and "Did you mean 'train'?" in out.stderr


@pytest.mark.slow
def test_readme_default_train_command(tmp_path):
    """The README's quickstart job exactly as written (minutes on 2 cores)."""
    out = run(["train"], tmp_path)
    assert "heldout" in out.stdout
