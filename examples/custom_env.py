"""A complete custom environment: reverse a word.

Try it:   posttrain envs try examples/custom_env.py:ReverseWord --difficulty 2 --seed 7
Train:    posttrain run stage=rlve 'envs.names=[examples/custom_env.py:ReverseWord]'
"""

from posttrain.envs import Env, Problem, ask


class ReverseWord(Env):
    name = "reverse_word"
    tags = ("strings",)

    def generate(self, seed: int, difficulty: int) -> Problem:
        rng = self.rng(seed, difficulty)  # never the global RNG: (seed, difficulty) names one problem
        word = "".join(rng.choice("abcdefgh") for _ in range(difficulty + 2))
        return self.problem(seed, difficulty, ask(f"Reverse {word}."), word[::-1], word=word)

    def check(self, problem: Problem, answer: str) -> bool:
        return answer.strip() == problem.params["word"][::-1]
