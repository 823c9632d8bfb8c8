"""A user's reward function, loaded by path: TRL's signature, one float per completion."""

from posttrain.answers import extract_answer


def exact(prompts, completions, answer, **kwargs):
    return [1.0 if extract_answer(c) == a else 0.0 for c, a in zip(completions, answer, strict=True)]


exact.score_range = (0.0, 1.0)  # lets rl.advantage=maxrl (rewards >= 0) accept it
