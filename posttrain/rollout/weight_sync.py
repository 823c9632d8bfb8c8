"""How new policy weights travel from the learner to the rollout workers.

A backend turns a state dict into one payload that every worker can load. `object_store` does one
`ray.put` that all workers read (zero extra copies on a node); a NCCL/gloo broadcast backend would
register here and hand workers a group handle instead of the tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch

WEIGHT_SYNC: dict[str, type[WeightSync]] = {}


class WeightSync(Protocol):
    def publish(self, state_dict: Mapping[str, torch.Tensor]) -> Any:
        """Payload that `RolloutWorker.load_weights` receives (Ray resolves object refs on the way)."""


class ObjectStoreSync:
    def publish(self, state_dict: Mapping[str, torch.Tensor]) -> Any:
        import ray

        return ray.put({name: tensor.detach().to("cpu") for name, tensor in state_dict.items()})


WEIGHT_SYNC["object_store"] = ObjectStoreSync
