"""Batch filters and TrainBatch construction, padding, alignment and splitting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from posttrain.rl.batch import TrainBatch
from posttrain.rl.filters import informative_groups, overlong_mask

PAD = 0


def test_informative_groups_drops_zero_variance_groups():
    rewards = [1, 1, 0, 1, 0.5, 0.5, 0]
    groups = [0, 0, 1, 1, 2, 2, 3]
    assert informative_groups(rewards, groups) == [2, 3]
    assert informative_groups([], []) == []
    with pytest.raises(ValueError):
        informative_groups([1.0], [0, 1])


def test_overlong_mask_zeroes_truncated_rows_only():
    mask = torch.ones(3, 4)
    out = overlong_mask(mask, [False, True, False])
    assert out.tolist() == [[1] * 4, [0] * 4, [1] * 4]
    with pytest.raises(ValueError):
        overlong_mask(mask, [True])


def small_batch() -> TrainBatch:
    return TrainBatch.from_lists(
        prompt_ids=[[5, 6], [7], [8, 9, 10]],
        completion_ids=[[11, 12, 13], [14], [15, 16]],
        behaviour_logprobs=[[-0.1, -0.2, -0.3], [-0.4], [-0.5, -0.6]],
        rewards=[1.0, 0.0, 1.0],
        group_ids=[0, 0, 1],
        pad_token_id=PAD,
        advantage="rloo",
    )


def test_from_lists_pads_right_and_aligns_completion_tensors():
    b = small_batch()
    assert b.input_ids.tolist() == [[5, 6, 11, 12, 13], [7, 14, 0, 0, 0], [8, 9, 10, 15, 16]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert b.completion_mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert b.behaviour_logprobs[0].tolist() == pytest.approx([0, 0, -0.1, -0.2, -0.3])
    assert b.behaviour_logprobs[2].tolist() == pytest.approx([0, 0, 0, -0.5, -0.6])
    assert b.advantages.tolist() == pytest.approx([1.0, -1.0, 0.0])  # rloo
    assert b.token_advantages().shape == (3, 5)


def test_from_lists_rejects_inconsistent_input():
    with pytest.raises(ValueError, match="behaviour log-probs"):
        TrainBatch.from_lists([[1]], [[2, 3]], [[-1.0]], [1.0], [0], pad_token_id=PAD)
    with pytest.raises(ValueError, match="differ in length"):
        TrainBatch.from_lists([[1]], [[2]], [[-1.0]], [1.0, 0.0], [0], pad_token_id=PAD)
    with pytest.raises(ValueError, match="empty prompt"):
        TrainBatch.from_lists([[]], [[2]], [[-1.0]], [1.0], [0], pad_token_id=PAD)


def test_split_and_select_keep_rows_together():
    b = small_batch()
    parts = b.split(2)
    assert [p.size for p in parts] == [2, 1] or [p.size for p in parts] == [1, 2]
    joined = torch.cat([p.input_ids for p in parts])
    assert torch.equal(joined, b.input_ids)
    picked = b.select([2, 0])
    assert picked.rewards.tolist() == [1.0, 1.0] and picked.input_ids[0, 0] == 8
    with pytest.raises(ValueError):
        b.split(4)
    with pytest.raises(ValueError, match="rows"):
        dataclasses.replace(b, advantages=b.advantages[:2])
