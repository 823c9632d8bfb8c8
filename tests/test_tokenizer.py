import random

from transformers import AutoTokenizer

from posttrain.models import build_char_tokenizer
from posttrain.models.tokenizer import CHARACTERS, MARKUP_TOKENS


def test_round_trip_on_random_text():
    tokenizer = build_char_tokenizer()
    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice(CHARACTERS) for _ in range(rng.randint(0, 80)))
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text)
        assert tokenizer.decode(ids) == text


def test_markup_is_one_token_each_and_survives_decoding():
    tokenizer = build_char_tokenizer()
    text = "<think>a</think><answer>42</answer>"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(MARKUP_TOKENS) + 3
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_and_save_load(tmp_path):
    tokenizer = build_char_tokenizer()
    messages = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<answer>2</answer>"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|user|>1+1?<|im_end|><|assistant|><answer>2</answer><|im_end|>"
    assert len(tokenizer(text, add_special_tokens=False).input_ids) == 1 + 4 + 1 + 1 + 3 + 1
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text).input_ids == tokenizer(text).input_ids
    assert reloaded.eos_token == "<|im_end|>" and reloaded.pad_token_id == tokenizer.pad_token_id


def test_same_ids_on_every_build():
    assert build_char_tokenizer().get_vocab() == build_char_tokenizer().get_vocab()
