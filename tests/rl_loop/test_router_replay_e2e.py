"""Router replay end to end: the hf engine records ZAYA routing while it decodes, RLLoop.batch lays it out, and
the learner's training forward runs exactly those classes on stale rollouts (and other ones without replay)."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch

from posttrain.config import compose, to_object
from posttrain.envs import EnvPool, EnvsConfig, make_curriculum
from posttrain.envs.config import CurriculumConfig
from posttrain.models import load_model
from posttrain.models.router_balancing import find_routers
from posttrain.rl.collect import Collector
from posttrain.rl.config import RLConfig
from posttrain.rl.learner import Learner
from posttrain.rl.loop import RLLoop, RLParts
from posttrain.rl.scoring import EnvScorer
from posttrain.rl.sources import CurriculumSource
from posttrain.rollout.backend import LocalFleet
from posttrain.rollout.config import RolloutConfig


@pytest.fixture(scope="module")
def pool():
    with EnvPool(EnvsConfig(workers=1), warm=["add"]) as pool:
        yield pool


def one_digit_sums(pool: EnvPool, seed: int) -> CurriculumSource:
    curriculum = make_curriculum(CurriculumConfig(kind="fixed", fixed_difficulty=0), ["add"], seed=seed)
    return CurriculumSource(curriculum, pool)


def routed_policy():
    """zaya-tiny whose routing depends strongly on the token (and skips some), so an update moves it."""
    model, _ = load_model("zaya-tiny", seed=0)
    for router in find_routers(model):
        router.router_mlp.out_proj.weight.data *= 300
        router.balancing_biases[-1] = 0.05
    return model


def with_rewards(samples):
    """Alternating rewards within every group: the updates need advantages that are not all zero."""
    for i, sample in enumerate(samples):
        sample.reward = float(i % 2)
    return samples


@contextmanager
def classes_run(model, size: int):
    """[size, L, layers] classes the experts ran (E = skip, −1 = not run) in forwards over all `size` rows,
    placed by each token's position id (the model counts positions from a row's first token)."""
    experts = [layer.mlp.experts for layer in model.model.layers]
    ran = {}
    current: dict = {}

    def before(_module, _args, kwargs):
        ids = kwargs["input_ids"]
        positions = kwargs.get("position_ids")
        current["positions"] = positions if positions is not None else torch.arange(ids.shape[1]).expand_as(ids)

    def hook_for(layer: int):
        def hook(module, inputs, _output):
            positions = current["positions"]
            if positions.shape[0] != size:
                return  # a shared context's forward: prompt positions, nothing recorded there
            index, weight = inputs[1][:, 0], inputs[2][:, 0]
            classes = torch.where(weight == 0, module.num_experts, index).view(positions.shape)
            for row in range(size):
                for column, position in enumerate(positions[row].tolist()):
                    ran.setdefault((row, position), {})[layer] = int(classes[row, column])

        return hook

    handles = [model.model.register_forward_pre_hook(before, with_kwargs=True)]
    handles += [e.register_forward_hook(hook_for(i)) for i, e in enumerate(experts)]
    try:
        yield ran
    finally:
        for handle in handles:
            handle.remove()


def test_stale_rollouts_are_replayed_exactly_and_route_otherwise_without_replay(pool):
    cfg = to_object(compose("rlve", []))
    policy = routed_policy()
    fleet = LocalFleet("zaya-tiny", RolloutConfig(backend="local", max_new_tokens=8, batch_size=64), device="cpu")
    fleet.sync_weights(policy.state_dict(), 0)
    source = one_digit_sums(pool, seed=5)
    collector = Collector(fleet, EnvScorer(pool), group_size=4, seed=0, max_steps=3)
    rl = RLConfig(optimizer="adamw", lr=1e-2, advantage="grpo", loss="ppo_clip", router_balancing=False)
    learner = Learner(copy.deepcopy(policy), rl, device="cpu")
    loop = RLLoop(type("Ctx", (), {"cfg": cfg})(), RLParts(fleet, learner, source, collector, fleet.tokenizer))

    stale = with_rewards(collector.collect(source.draw(3), step=1, attempt=0)[0])
    for step in (2, 3):  # the learner moves two updates ahead of the weights that drew `stale`
        learner.step(loop.batch(with_rewards(collector.collect(source.draw(3), step=step, attempt=0)[0])))
    assert learner.step_count == 2 and {s.rollout.policy_version for s in stale} == {0}

    batch = loop.batch(stale)
    # the layout: completion token i's routing at position P - 1 + i, everything else -1
    recorded = batch.routing[:, :, 0] >= 0
    for row, sample in enumerate(stale):
        prompt, completion = len(sample.rollout.prompt_ids), len(sample.rollout.completion_ids)
        recording = torch.from_numpy(sample.rollout.routing).long()
        assert torch.equal(batch.routing[row, prompt - 1 : prompt - 1 + completion], recording)
        assert int(recorded[row].sum()) == completion
    wanted = {(row, pos): batch.routing[row, pos].tolist() for row, pos in recorded.nonzero().tolist()}

    for replay in (True, False):
        learner.cfg.router_replay = replay
        with torch.no_grad(), classes_run(learner.model, batch.size) as ran:
            learner._logprobs(learner.model, learner.prepare(batch))
        got = {key: [ran[key][layer] for layer in range(len(value))] for key, value in wanted.items()}
        if replay:
            assert got == wanted  # every completion token ran the rollout's experts, in every layer
        else:
            assert sum(got[key] != wanted[key] for key in wanted) > 0  # the moved routers choose otherwise


def test_in_sync_mode_replayed_learner_logprobs_equal_the_behaviour_logprobs(pool):
    cfg = to_object(compose("rlve", []))
    policy = routed_policy()
    fleet = LocalFleet("zaya-tiny", RolloutConfig(backend="local", max_new_tokens=8, batch_size=64), device="cpu")
    fleet.sync_weights(policy.state_dict(), 0)
    source = one_digit_sums(pool, seed=7)
    collector = Collector(fleet, EnvScorer(pool), group_size=4, seed=1, max_steps=1)
    learner = Learner(copy.deepcopy(policy), RLConfig(optimizer="adamw", router_balancing=False), device="cpu")
    loop = RLLoop(type("Ctx", (), {"cfg": cfg})(), RLParts(fleet, learner, source, collector, fleet.tokenizer))
    batch = loop.batch(collector.collect(source.draw(3), step=1, attempt=0)[0])
    assert batch.routing is not None and learner.cfg.router_replay
    with torch.no_grad():
        logps, _ = learner._logprobs(learner.model, learner.prepare(batch))
    mask = batch.completion_mask > 0
    torch.testing.assert_close(logps[mask], batch.behaviour_logprobs[mask], atol=1e-6, rtol=0)
