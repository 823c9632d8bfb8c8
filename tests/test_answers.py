"""Answer extraction on realistic model outputs, with the expected answer written out by hand for each."""

from __future__ import annotations

import pytest

from posttrain.answers import extract_answer

# (completion, what a careful reader takes as the final answer; None: there is none)
CASES = [
    # the demo's SFT model doubles the closing tag
    ("<think>7*8=56, 56+64=120</think><answer>120</answer></answer>", "120"),
    ("<answer>120</answer></answer></answer>", "120"),
    ("<answer>3</answer></answer><answer>5</answer></answer>", "5"),
    ("<answer>120</answer>", "120"),
    ("<answer>  42 \n</answer>", "42"),
    # answers inside the reasoning do not count
    ("<think>maybe <answer>3</answer></think><answer>4</answer>", "4"),
    ("<think>maybe <answer>3</answer></think> I am not sure.", None),
    ("<think>a</think><think>b <answer>1</answer></think><answer>x</answer>", "x"),
    ("<think>still thinking, <answer>3</answer>", "3"),  # never closed: the whole text is the visible part
    # several answers: the last complete pair wins
    ("<think>try</think><answer>12</answer> wait, <answer>13</answer>", "13"),
    ("<answer>13</answer><answer>14", "13"),  # a trailing unclosed tag is not an answer
    ("<answer>12<answer>13</answer>", "13"),  # an unclosed tag followed by a complete pair
    ("<answer><answer>7</answer>", "7"),
    ("<answer><answer>7</answer></answer>", "7"),
    # malformed or absent
    ("</answer>120<answer>", None),
    ("<answer>", None),
    ("<answer>\\boxed{", None),
    ("<Answer>5</Answer>", None),  # tags are case-sensitive
    ("no answer here", None),
    ("", None),
    ("<answer></answer>", ""),  # present but empty: graded (and failed) as an empty answer
    # \boxed{} when there is no tag; the tag wins when both are there
    ("The answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("<think>\\boxed{1}</think>so \\boxed{2}", "2"),
    ("\\boxed{1} then \\fbox{2}", "2"),
    ("\\boxed{\\{1, 2\\}} and more text", "\\{1, 2\\}"),
    ("<answer>\\boxed{5}</answer>", "\\boxed{5}"),
    ("<answer>1</answer>\n\n\\boxed{2}", "1"),
]


@pytest.mark.parametrize(("completion", "expected"), CASES)
def test_extracts_the_final_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


def test_answer_line_style_for_math() -> None:
    styles = ("answer_tag", "boxed", "answer_line")
    assert extract_answer("The result.\nAnswer: 4\nThanks", styles) == "4"
    assert extract_answer("answer: 1\nANSWER: 2", styles) == "2"
    assert extract_answer("<answer>9</answer></answer>\nAnswer: 4", styles) == "9"
    assert extract_answer("Answer:\n4", styles) is None


def test_adversarial_input_is_handled() -> None:
    """Many unclosed tags then one pair: linear work, the pair's content, and non-text never raises."""
    assert extract_answer("<answer>" * 200_000 + "1</answer>" + "</answer>" * 200_000) == "1"
    assert extract_answer("<answer>" + "9" * 50_000 + "</answer>") == "9" * 10_000
    assert extract_answer(None) is None  # type: ignore[arg-type]
    assert extract_answer(b"<answer>1</answer>") is None  # type: ignore[arg-type]
