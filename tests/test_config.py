import pytest

from posttrain.config import compose, to_object
from posttrain.errors import UserError


def load(*overrides: str):
    return to_object(compose("sft", list(overrides)))


def test_defaults_resolve_run_dir_from_root_and_stage():
    cfg = load("run.root=/tmp/x")
    assert cfg.run.dir == "/tmp/x/sft"
    assert cfg.stage == "sft"
    assert cfg.model.path == "zaya-tiny"


def test_overrides_are_typed():
    cfg = load("trainer.max_steps=7", "trainer.lr=0.5", "data.tasks=[add,mul]", "logging.tensorboard=true")
    assert cfg.trainer.max_steps == 7 and cfg.trainer.lr == 0.5
    assert cfg.data.tasks == ["add", "mul"] and cfg.logging.report_to == ["tensorboard"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_step=5", "unknown config key 'trainer.max_step'; did you mean 'trainer.max_steps'?"),
        ("modle.path=x", "unknown config key 'modle.path'; did you mean 'model.path'?"),
        ("model.lora.rr=3", "did you mean 'model.lora.r'?"),
        ("trainer.max_steps=abc", "bad value for 'trainer.max_steps'"),
        ("run.overwrite=maybe", "bad value for 'run.overwrite'"),
        ("trainer.batch_size=0", "trainer.batch_size must be >= 1"),
        ("trainer.lr_scheduler=wavy", "trainer.lr_scheduler must be one of"),
        ("noequals", "expected key=value"),
    ],
)
def test_bad_input_names_the_key(override, expected):
    with pytest.raises(UserError) as error:
        load(override)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)
