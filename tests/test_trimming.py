from posttrain.data.trimming import fit_all, fit_to_budget
from posttrain.models import build_char_tokenizer

TOKENIZER = build_char_tokenizer()


def length(messages):
    return len(TOKENIZER(TOKENIZER.apply_chat_template(messages, tokenize=False), add_special_tokens=False).input_ids)


def chat(*turns):
    roles = ["user", "assistant"] * len(turns)
    return [{"role": r, "content": c} for r, c in zip(roles, turns, strict=False)]


def test_sample_that_fits_is_kept_unchanged():
    sample = chat("q", "<think>short</think><answer>1</answer>")
    fitted, status = fit_to_budget(sample, TOKENIZER, 200)
    assert status == "kept" and fitted == sample


def test_end_of_last_think_is_cut_and_answer_kept():
    thinking = "".join(str(i % 10) for i in range(300))
    sample = chat("question?", f"<think>{thinking}</think><answer>42</answer>")
    fitted, status = fit_to_budget(sample, TOKENIZER, 120)
    assert status == "trimmed"
    content = fitted[-1]["content"]
    assert content.endswith("</think><answer>42</answer>")
    kept_thinking = content[len("<think>") : content.index("</think>")]
    assert thinking.startswith(kept_thinking) and 0 < len(kept_thinking) < len(thinking)
    assert length(fitted) == 120  # cut as little as needed


def test_earlier_turns_lose_their_thinking_when_last_alone_is_not_enough():
    long = "x" * 200
    sample = chat("q1", f"<think>{long}</think>A1", "q2", "<think>abc</think>A2")
    fitted, status = fit_to_budget(sample, TOKENIZER, 100)
    assert status == "trimmed"
    assert fitted[1]["content"] == "A1"
    assert fitted[3]["content"] == "<think>abc</think>A2"  # the last turn's thinking survives intact
    assert length(fitted) <= 100


def test_sample_whose_answers_alone_do_not_fit_is_dropped():
    sample = chat("q", "<think>t</think>" + "a" * 300)
    assert fit_to_budget(sample, TOKENIZER, 100) == (None, "dropped")
    no_thinking = chat("q", "a" * 300)
    assert fit_to_budget(no_thinking, TOKENIZER, 100) == (None, "dropped")


def test_counts():
    samples = [chat("q", "<answer>1</answer>"), chat("q", f"<think>{'y' * 300}</think>ok"), chat("q", "z" * 500)]
    kept, counts = fit_all(samples, TOKENIZER, 100)
    assert counts == {"kept": 1, "trimmed": 1, "dropped": 1}
    assert len(kept) == 2 and all(length(s) <= 100 for s in kept)
