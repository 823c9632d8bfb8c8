"""IFEval's 25 instruction types: hand-written responses that follow each instruction and ones that do not,
IFEval-format rows as google/IFEval ships them, loose scoring, and the sentence/word/language helpers."""

from __future__ import annotations

import pytest

from posttrain.rewards import make_reward
from posttrain.rewards.ifeval import check_constraint
from posttrain.rewards.ifeval_checks import IFEVAL_CHECKS
from posttrain.rewards.langid import detect_language
from posttrain.rewards.text_units import sentences, word_tokens, words
from tests.rewards.test_ifeval import CASES as SHORT_NAME_CASES

# IFEval's instruction ids, written out independently of the code under test.
IFEVAL_IDS = {
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "language:response_language", "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "length_constraints:number_words", "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders", "detectable_content:postscript",
    "detectable_format:number_bullet_lists", "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections", "detectable_format:multiple_sections",
    "detectable_format:json_format", "detectable_format:title", "combination:two_responses",
    "combination:repeat_prompt", "startend:end_checker", "change_case:capital_word_frequency",
    "change_case:english_capital", "change_case:english_lowercase", "punctuation:no_comma", "startend:quotation",
}  # fmt: skip

# (instruction id, kwargs, responses that follow it, responses that do not)
CASES = [
    (
        "keywords:existence",
        {"keywords": ["ocean", "blue whale"]},
        ["The Ocean is home to the blue whale.", "BLUE WHALES swim in every ocean"],
        ["The ocean is big.", "A blue-whale lives in the sea."],
    ),
    (
        "keywords:frequency",
        {"keyword": "tea", "frequency": 3, "relation": "at least"},
        ["Tea, more tea, and iced TEA.", "tea tea tea tea"],
        ["Tea and coffee.", "Coffee only."],
    ),
    (
        "keywords:frequency",
        {"keyword": "tea", "frequency": 2, "relation": "less than"},
        ["I like tea.", "Coffee only."],
        ["tea tea", "steam and tea"],  # IFEval counts substrings: 'steam' holds 'tea'
    ),
    (
        "keywords:forbidden_words",
        {"forbidden_words": ["bad", "ugly"]},
        ["A badge and an ugliness-free day.", "All good."],
        ["That was BAD.", "so ugly!"],
    ),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 3, "let_relation": "at least"},
        ["Zebras zigzag.", "zzz"],
        ["Lazy dog", "no such letter"],
    ),
    (
        "keywords:letter_frequency",
        {"letter": "E", "let_frequency": 2, "let_relation": "less than"},
        ["Hi all", "Hey"],
        ["Tree", "EVEN"],
    ),
    (
        "language:response_language",
        {"language": "fr"},
        ["Bonjour, je suis très content de vous voir et nous allons au marché.", "12345"],
        ["Hello, I am glad to see you and we are going to the market.", "Hola, el perro es muy grande."],
    ),
    (
        "language:response_language",
        {"language": "ru"},
        ["Я думаю, что это хорошая идея."],
        ["Я думаю, що це гарна ідея.", "This is English."],  # the first one is Ukrainian
    ),
    (
        "language:response_language",
        {"language": "hi"},
        ["यह एक अच्छा दिन है और मैं खुश हूँ।"],
        ["हा एक चांगला दिवस आहे आणि मी आनंदी आहे.", "今日はいい天気です。"],  # Marathi; Japanese
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "at least"},
        ["Dr. Smith arrived. He sat down! Was it 3.5 hours?", "One. Two. Three. Four."],
        ["Mr. and Mrs. Brown met Dr. Who at 10 a.m. yesterday. Then they left.", "No terminator at all"],
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "less than"},
        ["One line with no end", "The U.S.A. is large."],
        ["First. Second.", "Wait... what happened? Nothing."],
    ),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 3},
        ["One.\n***\nTwo.\n***\nThree.", "***\nOne\n***\nTwo\n***\nThree\n***"],
        ["One.\n***\n***\nTwo.\n***\nThree.", "One.\n\nTwo.\n\nThree."],
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "less than"},
        ["Four words are here.", "It's fine."],
        ["one two three four five", "A longer answer than allowed here."],
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        ["one two three four five", "It's a fine day."],  # It, s, a, fine, day
        ["Don't stop.", ""],
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "however"},
        ['Intro here.\n\n"However, the second."\n\nThe end.', "A.\n\nhowever it goes\n\nC."],
        ["Intro.\n\nMoreover, no.\n\nEnd.", "Intro.\n\nHowever, yes.", "Intro.\nHowever, yes.\nEnd."],
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        ["Dear [name], meet me at [place].", "[a][b][c]"],
        ["Dear [name], see you.", "Dear [name\n], at place"],
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        ["Thanks!\nP.S. Bring snacks.", "Thanks! p. s. later"],
        ["Thanks!\nPS bring snacks.", "Thanks!"],
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.P.S"},
        ["Bye.\nP.P.S see you"],
        ["Bye.\nP.S. see you"],
    ),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 3},
        ["* one\n* two\n- three", "Intro:\n  * a\n  * b\n  * c\nDone."],
        ["* one\n* two", "** bold line\n* a\n* b", "* a\n* b\n* c\n- d"],
    ),
    (
        "detectable_format:constrained_response",
        {},
        ["After thinking, My answer is yes.", "My answer is maybe."],
        ["My answer is definitely yes.", "my answer is no."],
    ),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 2},
        ["This is *important* and **very bold**.", "*a* *b*"],
        ["Only *one* here.", "Empty ** and * * marks"],
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        ["Section 1\nIntro text\nSection 2\nMore text", "Section 1 a Section 2 b Section 3 c"],
        ["Section 1\nOnly one", "SECTION 1\nA\nSECTION 2\nB"],
    ),
    (
        "detectable_format:json_format",
        {},
        ['```json\n{"a": 1}\n```', "  [1, 2, 3]  "],
        ["{'a': 1}", 'Here is JSON: {"a": 1}'],
    ),
    (
        "detectable_format:title",
        {},
        ["<<Ode to Tea>>\nSteam rises.", "Text <<x>> more"],
        ["<< >>\nno title", "<<Ode\nto Tea>>", "Ode to Tea"],
    ),
    (
        "combination:two_responses",
        {},
        ["First answer.\n******\nSecond answer.", "******\nA\n******\nB\n******"],
        ["Same.\n******\nSame.", "A\n******\n******\nB", "Just one."],
    ),
    (
        "combination:repeat_prompt",
        {"prompt_to_repeat": "Write a haiku about tea."},
        ["Write a haiku about tea. Steam curls.", "  write a HAIKU about tea.\nLeaves"],
        ["Sure! Write a haiku about tea.", "Write a haiku about coffee."],
    ),
    (
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        ["Done. Any other questions?", '"That is all. any other questions?"  '],
        ["Any other questions? Bye.", "Done. Any other questions"],
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        ["The NASA and ESA missions.", "WELL-KNOWN U.S. facts"],
        ["Only NASA here.", "nothing loud"],
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        ["we like nasa.", "Just NASA."],
        ["USA and UK", "I like NASA."],  # 'I' is a capital word too
    ),
    (
        "change_case:english_capital",
        {},
        ["THIS IS ALL CAPS, OK?", "HELLO THERE"],
        ["THIS IS Mostly CAPS", "ESTO ES UNA PRUEBA Y NO ES INGLÉS"],
    ),
    (
        "change_case:english_lowercase",
        {},
        ["all lowercase here, and that is fine.", "ok"],
        ["Not all lowercase.", "esto es una prueba y no es inglés", "1234"],
    ),
    ("punctuation:no_comma", {}, ["No commas here.", ""], ["Well, one.", "a,b"]),
    ("startend:quotation", {}, ['"Wrapped."', '  "x"  '], ['"Half wrapped.', '"']),
]


def test_the_table_covers_all_25_ifeval_types_and_the_registry_has_exactly_them() -> None:
    assert len(IFEVAL_IDS) == 25
    assert {case[0] for case in CASES} == IFEVAL_IDS
    assert set(IFEVAL_CHECKS) == IFEVAL_IDS


@pytest.mark.parametrize(("instruction", "kwargs", "good", "bad"), CASES, ids=[c[0] for c in CASES])
def test_instruction_accepts_following_and_rejects_violating_responses(
    instruction: str, kwargs: dict, good: list[str], bad: list[str]
) -> None:
    spec = {"type": instruction, **kwargs}
    for response in good:
        assert check_constraint(response, spec) is True, response
    for response in bad:
        assert check_constraint(response, spec) is False, response


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "keywords:existence", "keywords": "ocean"},  # a string, not a list
        {"type": "length_constraints:number_words", "num_words": 5, "relation": "about"},
        {"type": "length_constraints:number_words", "relation": "at least"},
        {"type": "language:response_language", "language": "xx"},
        {"type": "detectable_content:number_placeholders", "num_placeholders": "many"},
        {"type": "length_constraints:nth_paragraph_first_word", "num_paragraphs": 1, "first_word": "a"},
    ],
)
def test_malformed_ifeval_kwargs_fail_the_instruction(spec: dict) -> None:
    assert check_constraint("ocean ocean ocean. a b c d e f", spec) is False


def test_reward_takes_ifeval_rows_as_google_ifeval_ships_them() -> None:
    # google/IFEval gives every kwargs dict all keys, unused ones null.
    null_kwargs = {"num_words": None, "relation": None, "end_phrase": None, "keywords": None}
    rows = {
        "instruction_id_list": [
            ["length_constraints:number_words", "startend:end_checker"],
            ["change_case:english_lowercase"],
            ["length_constraints:number_words", "startend:end_checker"],
        ],
        "kwargs": [
            [{**null_kwargs, "num_words": 4, "relation": "at least"}, {**null_kwargs, "end_phrase": "Bye."}],
            [dict(null_kwargs)],
            [{**null_kwargs, "num_words": 4, "relation": "at least"}, {**null_kwargs, "end_phrase": "Bye."}],
        ],
    }
    completions = ["<think>Plan it.</think>Here are enough words. Bye.", "all quiet here", "Too short. Bye."]
    out = make_reward("ifeval")(["p"] * 3, completions, **rows)
    assert out.scores == [1.0, 1.0, 0.0]
    assert out.metrics["ifeval/pass"] == pytest.approx(2 / 3)
    assert out.metrics["ifeval/instruction_pass"] == pytest.approx(4 / 5)
    assert out.metrics["ifeval/length_constraints:number_words"] == pytest.approx(0.5)
    assert out.metrics["ifeval/startend:end_checker"] == 1.0
    assert out.metrics["ifeval/change_case:english_lowercase"] == 1.0
    fraction = make_reward("ifeval", strict=False)(["p"] * 3, completions, **rows)
    assert fraction.scores == [1.0, 1.0, 0.5]


def test_short_names_and_ifeval_ids_mix_in_one_batch() -> None:
    out = make_reward("ifeval")(
        ["p", "p"],
        ["no commas here", "Has, comma"],
        constraints=[[{"type": "no_commas"}], [{"type": "no_commas"}]],
        instruction_id_list=[["change_case:english_lowercase"], ["change_case:english_lowercase"]],
        kwargs=[[{}], [{}]],
    )
    assert out.scores == [1.0, 0.0]
    assert out.metrics["ifeval/no_commas"] == 0.5 and out.metrics["ifeval/change_case:english_lowercase"] == 0.5


def test_loose_scoring_forgives_a_preamble_line_and_markdown_stars() -> None:
    rows = {"instruction_id_list": [["startend:quotation"], ["detectable_format:json_format"]], "kwargs": [[{}], [{}]]}
    completions = ['Sure, here it is:\n"All wrapped up."', '**Answer**\n{"a": 1}']
    assert make_reward("ifeval")(["p", "p"], completions, **rows).scores == [0.0, 0.0]
    assert make_reward("ifeval", loose=True)(["p", "p"], completions, **rows).scores == [1.0, 1.0]
    first_row = {key: value[:1] for key, value in rows.items()}
    assert make_reward("ifeval", loose=True)(["p"], ["no quotes at all"], **first_row).scores == [0.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith arrived. He sat down!", ["Dr. Smith arrived.", "He sat down!"]),
        ("It costs 3.50 dollars. Cheap?", ["It costs 3.50 dollars.", "Cheap?"]),
        ("We met J. Doe in the U.S. yesterday. Fine.", ["We met J. Doe in the U.S. yesterday.", "Fine."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Wait... what? No!!! Yes.", ["Wait... what?", "No!!!", "Yes."]),
        ("no terminator", ["no terminator"]),
        ("Use e.g. tea, i.e. a drink. Done", ["Use e.g. tea, i.e. a drink.", "Done"]),
        ("... !!! ???", []),
    ],
)
def test_sentence_splitting(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


def test_word_splitting() -> None:
    assert words("It's a well-known fact: 3.5 cups!") == ["It", "s", "a", "well", "known", "fact", "3", "5", "cups"]
    assert word_tokens("It's a WELL-KNOWN fact, U.S. style!") == ["It's", "a", "WELL-KNOWN", "fact", "U.S", "style"]


LANGUAGE_SAMPLES = {
    "en": "The weather is nice today and we are going to the park.",
    "es": "El perro de mi vecino es muy grande y come todo el día.",
    "pt": "O cachorro do meu vizinho é muito grande e não para de latir.",
    "fr": "Le chien de mon voisin est très grand et il mange toute la journée.",
    "de": "Der Hund meines Nachbarn ist sehr groß und frisst den ganzen Tag.",
    "it": "Il cane del mio vicino è molto grande e mangia tutto il giorno.",
    "pl": "Pies mojego sąsiada jest bardzo duży i je cały dzień.",
    "vi": "Con chó của hàng xóm tôi rất to và ăn cả ngày.",
    "sw": "Mbwa wa jirani yangu ni mkubwa sana na anakula siku nzima.",
    "fi": "Naapurini koira on hyvin suuri ja se syö koko päivän.",
    "ru": "Собака моего соседа очень большая, и она ест весь день.",
    "uk": "Собака мого сусіда дуже велика, і вона їсть цілий день.",
    "bg": "Кучето на моя съсед е много голямо и яде цял ден.",
    "ar": "كلب جاري كبير جدا ويأكل طوال اليوم.",
    "fa": "سگ همسایه من خیلی بزرگ است و تمام روز غذا می‌خورد.",
    "ur": "میرے پڑوسی کا کتا بہت بڑا ہے اور وہ سارا دن کھاتا ہے۔",
    "he": "הכלב של השכן שלי גדול מאוד ואוכל כל היום.",
    "hi": "मेरे पड़ोसी का कुत्ता बहुत बड़ा है और वह पूरे दिन खाता है।",
    "mr": "माझ्या शेजाऱ्याचा कुत्रा खूप मोठा आहे आणि तो दिवसभर खातो.",
    "ne": "मेरो छिमेकीको कुकुर धेरै ठूलो छ र यो दिनभरि खान्छ।",
    "bn": "আমার প্রতিবেশীর কুকুরটি খুব বড় এবং সারাদিন খায়।",
    "ta": "என் பக்கத்து வீட்டுக்காரரின் நாய் மிகவும் பெரியது.",
    "te": "మా పొరుగువారి కుక్క చాలా పెద్దది.",
    "kn": "ನನ್ನ ನೆರೆಹೊರೆಯವರ ನಾಯಿ ತುಂಬಾ ದೊಡ್ಡದು.",
    "gu": "મારા પાડોશીનો કૂતરો ખૂબ મોટો છે.",
    "pa": "ਮੇਰੇ ਗੁਆਂਢੀ ਦਾ ਕੁੱਤਾ ਬਹੁਤ ਵੱਡਾ ਹੈ।",
    "ml": "എന്റെ അയൽക്കാരന്റെ നായ വളരെ വലുതാണ്.",
    "th": "สุนัขของเพื่อนบ้านฉันตัวใหญ่มาก",
    "ja": "隣の犬はとても大きくて、一日中食べています。",
    "ko": "이웃집 개는 아주 크고 하루 종일 먹어요.",
    "zh": "我邻居的狗很大，整天都在吃东西。",
}


@pytest.mark.parametrize(("language", "text"), LANGUAGE_SAMPLES.items(), ids=list(LANGUAGE_SAMPLES))
def test_language_identification(language: str, text: str) -> None:
    assert detect_language(text) == language
    assert check_constraint(text, {"type": "language:response_language", "language": language}) is True
    other = "de" if language != "de" else "en"
    assert check_constraint(text, {"type": "language:response_language", "language": other}) is False


def test_hostile_responses_are_scored_in_linear_time() -> None:
    """Each string would take minutes under a backtracking (quadratic) pattern; linear scans take milliseconds."""
    hostile = ["\n" * 60_000, "." * 60_000 + "x", "[" * 60_000, "<<" * 30_000, "*" * 60_000, " " * 60_000 + "p"]
    for text in hostile:
        for spec in [{"type": t, **kwargs} for t, kwargs, _, _ in CASES] + [c[0] for c in SHORT_NAME_CASES]:
            check_constraint(text, spec)
