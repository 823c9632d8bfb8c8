"""A custom reward function, in TRL's signature: reward the answer, and a little for staying short.

Run this file to score a few completions:   python examples/custom_reward.py
Use it in a config:   rewards.components=[{name: examples/custom_reward.py:short_and_right}]
(or `my_package.rewards:short_and_right` when it lives in an importable module).
"""

import re


def short_and_right(prompts, completions, answer, **kwargs):
    """1 for the gold answer in <answer> tags, minus 0.01 per character beyond 40; one float per completion.

    `answer` is a dataset column; every column reaches the function as a keyword, and so do `step` and
    `max_steps`. Completions are strings, whatever the model produced.
    """
    scores = []
    for completion, gold in zip(completions, answer, strict=True):
        found = re.findall(r"<answer>(.*?)</answer>", completion, flags=re.DOTALL)
        right = bool(found) and found[-1].strip() == str(gold)
        scores.append(float(right) - max(0, len(completion) - 40) / 100)
    return scores


if __name__ == "__main__":
    from posttrain.rewards import RewardsConfig, RewardSpec, build_reward

    # The same reward a stage builds from `rewards.components=[{name: examples/custom_reward.py:short_and_right}]`:
    # the function's score, zeroed for looping text by the repetition canary.
    reward = build_reward(RewardsConfig(components=[RewardSpec(name=f"{__file__}:short_and_right")]))
    prompts = ["What is 2+2?"] * 3
    completions = ["<answer>4</answer>", "<answer>5</answer>", "I think " + "very " * 20 + "<answer>4</answer>"]
    out = reward(prompts, completions, answer=["4"] * 3)
    for completion, score in zip(completions, out.scores, strict=True):
        print(f"{score:+.2f}  {completion[:50]!r}")
