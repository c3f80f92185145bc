"""Every config group composes onto its typed schema; schema defaults are the YAML defaults; foreign keys are refused."""

from __future__ import annotations

from importlib.resources import files

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from devlearn.config import AGENT_SCHEMAS, AGENTS, register_configs
from devlearn.validate import validate

register_configs()
CONFIGS = files("devlearn.configs")
ENVS = sorted(p.name[: -len(".yaml")] for p in CONFIGS.joinpath("env").iterdir() if p.name.endswith(".yaml"))


def composed(*overrides: str):
    with initialize_config_module(config_module="devlearn.configs", version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_the_agent_list_is_the_config_group() -> None:
    yamls = sorted(p.name[: -len(".yaml")] for p in CONFIGS.joinpath("agent").iterdir() if p.name.endswith(".yaml"))
    assert yamls == sorted(AGENTS)


@pytest.mark.parametrize("agent", AGENTS)
def test_agent_yaml_defaults_equal_the_schema(agent: str) -> None:
    cfg = composed(f"agent={agent}")
    assert OmegaConf.to_container(cfg.agent) == OmegaConf.to_container(OmegaConf.structured(AGENT_SCHEMAS[agent]))
    validate(cfg)


@pytest.mark.parametrize("env", ENVS)
def test_every_env_composes_and_validates(env: str) -> None:
    overrides = [f"env={env}"] + (["env.id=CartPole-v1"] if env == "gym" else [])
    cfg = composed(*overrides)
    assert cfg.env.name == env and cfg.env.id
    validate(cfg)


@pytest.mark.parametrize(
    "agent, key",
    [("ppo", "agent.shield_tau=0.1"), ("ablation", "agent.world_model_coef=1"), ("recurrent_ppo", "agent.core.window=2")],
)
def test_a_key_of_another_agent_does_not_compose(agent: str, key: str) -> None:
    with pytest.raises(ConfigCompositionException):
        composed(f"agent={agent}", key)


def test_the_default_agent_is_the_developmental_one_with_its_shield() -> None:
    cfg = composed()
    assert cfg.agent.name == "developmental" and cfg.agent.shield_tau == 0.5 and cfg.agent.core.window == 4
    assert cfg.agent.world_model.catastrophe_pos_weight == 20.0


def test_the_memory_group_is_the_list_of_variants_and_sets_agent_memory() -> None:
    from devlearn.model.memory import VARIANTS

    yamls = sorted(p.name[: -len(".yaml")] for p in CONFIGS.joinpath("memory").iterdir() if p.name.endswith(".yaml"))
    assert yamls == sorted(VARIANTS)
    assert composed().agent.memory.variant == "window"  # unset: the agent's own default
    for variant in VARIANTS:
        for agent in ("developmental", "ablation"):
            cfg = composed(f"agent={agent}", f"memory={variant}", "agent.memory.k=8")
            assert cfg.agent.memory.variant == variant and cfg.agent.memory.k == 8
            validate(cfg)
    with pytest.raises(ConfigCompositionException):  # the SB3 agents have no memory keys
        composed("agent=ppo", "memory=hybrid")


def test_upgrade_gives_an_old_run_the_values_it_ran_with_not_todays_defaults() -> None:
    """A run stored before agent.intrinsic, intrinsic_coef and shield_tau existed keeps its behaviour."""
    from devlearn.config import upgrade

    today = composed("agent=developmental")
    old = OmegaConf.create(OmegaConf.to_container(today))
    for key in ("intrinsic", "shield_tau"):
        del old.agent[key]
    upgraded = upgrade(old)
    assert upgraded.agent.intrinsic == "surprise"  # intrinsic_coef alone meant the world model's surprise
    assert upgraded.agent.shield_tau == 1.0  # it acted unshielded
    del old.agent["intrinsic_coef"]
    upgraded = upgrade(old)
    assert (upgraded.agent.intrinsic, upgraded.agent.intrinsic_coef) == ("none", 0.0)  # it paid no bonus
    # keys it has are kept; keys it predates elsewhere come from the schema
    del old.agent.world_model["k"]
    assert upgrade(old).agent.world_model.k == OmegaConf.structured(AGENT_SCHEMAS["developmental"]).world_model.k
    # a config written today comes back unchanged
    assert OmegaConf.to_container(upgrade(today)) == OmegaConf.to_container(today)


def test_upgrade_refuses_a_key_this_devlearn_does_not_know() -> None:
    from devlearn.config import upgrade
    from devlearn.errors import ConfigError

    old = OmegaConf.create(OmegaConf.to_container(composed("agent=ablation")))
    old.agent["shield_taux"] = 0.3
    with pytest.raises(ConfigError, match="shield_taux"):
        upgrade(old)
    old = OmegaConf.create(OmegaConf.to_container(composed("agent=ablation")))
    old.agent.name = "dreamer"
    with pytest.raises(ConfigError, match="dreamer"):
        upgrade(old)


@pytest.mark.parametrize("agent", AGENTS)
def test_the_minibatch_follows_the_batch_unless_batch_size_is_set(agent: str) -> None:
    from devlearn.config import minibatch_size  # deferred: the helper under test, beside its test

    cfg = composed(f"agent={agent}")
    assert minibatch_size(cfg.agent, 8) == 256  # the CPU default, as before minibatches followed the batch
    rollout = cfg.agent.n_steps * 1024
    assert minibatch_size(cfg.agent, 1024) == rollout // cfg.agent.num_minibatches
    assert minibatch_size(composed(f"agent={agent}", "agent.batch_size=100").agent, 1024) == 100


def test_more_minibatches_than_transitions_names_the_rollout() -> None:
    from devlearn.errors import ConfigError  # deferred: only this test raises it

    with pytest.raises(ConfigError, match=r"agent.num_minibatches=9999 is more than the rollout's 512 transitions"):
        validate(composed("agent.num_minibatches=9999"))
