from posttrain.checkpoint import CheckpointManager, step_of


def write(step):
    return lambda directory: (directory / "weights.bin").write_text(str(step))


def test_rotation_keeps_the_last_k(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep=2)
    for step in (10, 20, 30, 40):
        manager.save(step, write(step))
    assert [s for s, _ in manager.steps()] == [30, 40]
    assert step_of(manager.latest()) == 40
    assert (manager.latest() / "weights.bin").read_text() == "40"
    assert not list(manager.staging.glob("trash-*"))


def test_half_written_checkpoints_are_never_picked(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints", keep=3)
    manager.save(10, write(10))
    partial = manager.staging / "step-20"  # a save killed mid-way
    partial.mkdir(parents=True)
    (partial / "weights.bin").write_text("half")
    (manager.root / "step-30").mkdir()  # a directory that was never committed
    assert step_of(manager.latest()) == 10


def test_resaving_a_step_replaces_it(tmp_path):
    manager = CheckpointManager(tmp_path / "c", keep=2)
    manager.save(5, write(1))
    manager.save(5, lambda d: (d / "weights.bin").write_text("again"))
    assert [s for s, _ in manager.steps()] == [5]
    assert (manager.latest() / "weights.bin").read_text() == "again"


def test_empty(tmp_path):
    assert CheckpointManager(tmp_path / "none", keep=1).latest() is None
