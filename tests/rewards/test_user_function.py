"""A user's reward function named by path: `file.py:function` or `module.sub:function`, TRL's signature
`(prompts, completions, **columns) -> list[float]` or posttrain's `RewardOutput`."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.rewards import RewardsConfig, RewardSpec, build_reward, make_reward

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_reward.py"

TRL_STYLE = """
def exact(prompts, completions, answer, **kwargs):
    return [1.0 if c.strip() == a else 0.0 for c, a in zip(completions, answer)]

def scaled(prompts, completions, scale=1.0, **kwargs):
    return [scale * len(c) for c in completions]

def detailed(prompts, completions, **kwargs):
    from posttrain.rewards import RewardOutput
    return RewardOutput([0.5] * len(completions), {"detailed/calls": 1.0})

def lengths(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]

NOT_A_FUNCTION = 3
"""
PROMPTS = ["What is 2+2?", "What is 3+3?", "What is 4+4?"]
COMPLETIONS = ["4", " 6 ", "9"]
ANSWERS = ["4", "6", "8"]


@pytest.fixture(autouse=True)
def _forget_loaded_files():
    """Reward files are loaded as modules named after their path; drop the ones a test loaded."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("posttrain_user_reward_"):
            del sys.modules[name]


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(TRL_STYLE)
    return path


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """`mypkg.scoring` importable for the test only; removed from sys.modules afterwards."""
    package = tmp_path / "pkgroot" / "mypkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(TRL_STYLE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgroot"))
    yield "mypkg.scoring"
    for name in [n for n in sys.modules if n == "mypkg" or n.startswith("mypkg.")]:
        del sys.modules[name]


def test_a_trl_style_function_from_a_file(reward_file):
    reward = make_reward(f"{reward_file}:exact")
    out = reward(PROMPTS, COMPLETIONS, answer=ANSWERS, step=3, max_steps=10)
    assert out.scores == [1.0, 1.0, 0.0] and out.metrics == {}


def test_a_relative_path_is_taken_from_the_working_directory(reward_file, monkeypatch):
    monkeypatch.chdir(reward_file.parent)
    assert make_reward("my_rewards.py:exact")(PROMPTS, COMPLETIONS, answer=ANSWERS).scores == [1.0, 1.0, 0.0]


def test_a_function_from_a_module(user_package):
    reward = make_reward(f"{user_package}:exact")
    assert reward(PROMPTS, COMPLETIONS, answer=ANSWERS).scores == [1.0, 1.0, 0.0]


def test_kwargs_are_bound_and_a_reward_output_passes_through(reward_file):
    assert make_reward(f"{reward_file}:scaled", scale=2.0)(PROMPTS, COMPLETIONS).scores == [2.0, 6.0, 2.0]
    out = make_reward(f"{reward_file}:detailed")(PROMPTS, COMPLETIONS)
    assert out.scores == [0.5, 0.5, 0.5] and out.metrics == {"detailed/calls": 1.0}


def test_in_a_rewards_config_beside_a_builtin(reward_file):
    config = RewardsConfig(
        components=[RewardSpec(name="math"), RewardSpec(name=f"{reward_file}:lengths", weight=0.5)],
    )
    out = build_reward(config)(PROMPTS, ["<answer>4</answer>", "<answer>7</answer>", "x"], answer=ANSWERS)
    # math: 1, 0, 0; lengths: 18, 18, 1 characters at weight 0.5
    assert out.scores == [1.0 + 9.0, 0.0 + 9.0, 0.0 + 0.5]


def test_model_output_of_any_kind_reaches_the_function_as_text(reward_file):
    completions = [None, b"\xff\xfebytes", "x" * 100_000, "\x00\x01"]
    out = make_reward(f"{reward_file}:lengths")(["p"] * 4, completions)
    assert out.scores == [0.0, float(len(b"\xff\xfebytes".decode("utf-8", errors="replace"))), 100_000.0, 2.0]


def test_it_pickles_by_name_and_loads_again_in_another_process(reward_file):
    payload = pickle.dumps(make_reward(f"{reward_file}:exact"))
    script = textwrap.dedent(
        """
        import pickle, sys
        reward = pickle.loads(sys.stdin.buffer.read())
        print(reward(["q"], ["4"], answer=["4"]).scores)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], input=payload, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[1.0]"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return [1.0]", "returned 1 scores for 3 completions"),
        ("return 1.0", "returned float; expected a list with one float per completion, or a RewardOutput"),
        ("return [1.0, float('nan'), 0.0]", "returned nan at index 1; rewards must be finite"),
        ("return [1.0, 0.0, float('inf')]", "returned inf at index 2; rewards must be finite"),
        ("return [1.0, 'good', 0.0]", "returned 'good' at index 1, not a number"),
        (
            "return [None, 1.0, 0.0]",
            "returned None at index 0, not a number (rewards are numbers; give 0.0 for samples a function cannot "
            "score)",
        ),
    ],
)
def test_output_that_breaks_the_contract_is_one_clear_line(tmp_path, body, message):
    path = tmp_path / "bad.py"
    path.write_text(f"def score(prompts, completions, **kwargs):\n    {body}\n")
    reward = make_reward(f"{path}:score")
    with pytest.raises(UserError) as error:
        reward(PROMPTS, COMPLETIONS)
    assert str(error.value) == f"reward '{path}:score' {message}"


def test_numpy_scores_are_accepted(tmp_path):
    path = tmp_path / "np_reward.py"
    path.write_text("import numpy as np\ndef score(prompts, completions, **kw):\n    return np.array([0.25, 1, 0])\n")
    assert make_reward(f"{path}:score")(PROMPTS, COMPLETIONS).scores == [0.25, 1.0, 0.0]


def test_names_that_cannot_be_resolved(tmp_path, reward_file):
    broken = tmp_path / "broken.py"
    broken.write_text("def score(:\n")
    cases = {
        f"{tmp_path}/nope.py:score": f"reward '{tmp_path}/nope.py:score': no such file '{tmp_path}/nope.py'",
        f"{reward_file}:exakt": f"reward '{reward_file}:exakt': '{reward_file}' has no function 'exakt'; "
        "did you mean 'exact'?",
        f"{reward_file}:NOT_A_FUNCTION": f"reward '{reward_file}:NOT_A_FUNCTION': 'NOT_A_FUNCTION' in "
        f"'{reward_file}' is a int, not a function",
        "no_such_pkg.rewards:score": "reward 'no_such_pkg.rewards:score': no module named 'no_such_pkg.rewards'",
        f"{reward_file}:": f"reward '{reward_file}:': expected <file.py>:<function> or <module>:<function>",
    }
    for name, message in cases.items():
        with pytest.raises(UserError) as error:
            make_reward(name)
        assert str(error.value) == message
    with pytest.raises(UserError, match=r"^reward '.*broken.py:score': loading '.*broken.py' raised SyntaxError: "):
        make_reward(f"{broken}:score")


def test_the_example_runs_as_a_plain_script():
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # right; wrong; right but 8 + 5 * 20 + 18 = 126 characters long: 1 - (126 - 40) / 100
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["+1.00", "+0.00", "+0.14"]
