"""Sandbox behaviour on well-behaved programs, real HumanEval data, the loaders and the isolation choice."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from posttrain.errors import UserError
from posttrain.rewards import CodeResult, make_reward, run_code
from posttrain.rewards.sandbox import available_levels, isolation_level, load_code_jsonl, load_humaneval, run_code_many
from posttrain.rewards.sandbox.interpreter import (
    Interpreter,
    host_interpreter,
    runs_unprivileged,
    unprivileged_interpreter,
)

ORDER = ("bwrap", "unshare", "rlimits")  # strongest first, as docs/rewards.md promises
_HOST_NS = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("user", "pid", "net")}
# Assert-style tests that hold only under one level, read from the kernel rather than from our code.
FINGERPRINT = {
    "bwrap": f"import os\nassert os.readlink('/proc/self/ns/user') != {_HOST_NS['user']!r}",
    "unshare": (
        f"import os\nassert os.readlink('/proc/self/ns/user') == {_HOST_NS['user']!r}\n"
        f"assert os.readlink('/proc/self/ns/pid') != {_HOST_NS['pid']!r}\n"
        f"assert os.readlink('/proc/self/ns/net') != {_HOST_NS['net']!r}"
    ),
    "rlimits": (
        f"import os\nassert os.readlink('/proc/self/ns/pid') == {_HOST_NS['pid']!r}\n"
        "assert os.getuid() != 0 and os.geteuid() != 0 and os.getgid() != 0"
    ),
}
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs code as another uid")


def _forget_levels() -> None:
    for cached in (available_levels, isolation_level, unprivileged_interpreter):
        cached.cache_clear()


@pytest.fixture
def fresh_levels() -> Iterator[None]:
    """Levels are probed once per process; a test that breaks some must not leave its answers cached."""
    _forget_levels()
    yield
    _forget_levels()


def _break(tools: tuple[str, ...], shims: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put failing stand-ins for `tools` first on PATH, as on a machine where they exist but cannot work."""
    shims.mkdir(exist_ok=True)
    for tool in tools:
        (shims / tool).write_text("#!/bin/sh\nexit 1\n")
        (shims / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    _forget_levels()


def test_fingerprints_tell_the_levels_apart() -> None:
    """Each level passes its own fingerprint and fails the others', so the fallback test below is meaningful."""
    for level in available_levels():
        verdicts = {other: run_code("x = 1", tests, isolation=level).status for other, tests in FINGERPRINT.items()}
        assert verdicts == {other: "ok" if other == level else "fail" for other in FINGERPRINT}, level


@pytest.mark.parametrize("broken", [(), ("bwrap",), ("unshare",), ("bwrap", "unshare")])
def test_auto_falls_back_to_the_strongest_level_that_works(
    broken: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_levels: None
) -> None:
    machine = set(available_levels())
    _break(broken, tmp_path / "shims", monkeypatch)
    expected = [level for level in ORDER if level in machine and level not in broken]
    assert available_levels() == tuple(expected)
    assert isolation_level() == expected[0]
    assert run_code("x = 1", FINGERPRINT[expected[0]]).status == "ok"  # the code really ran under that level
    for level in broken:
        with pytest.raises(ValueError, match="not available"):
            isolation_level(level)


def test_assert_tests_are_counted_one_by_one() -> None:
    program = "def add(a, b):\n    return a + b if a < 10 else 0\n"
    tests = "assert add(1, 2) == 3\nassert add(20, 1) == 21\nhelper = 5\nassert add(helper, 1) == 6\n"
    assert run_code(program, tests) == CodeResult(2, 3, "fail")
    result = run_code(program, "assert add(1, 1) == 2")
    assert (result.passed, result.total, result.status, result.fraction) == (1, 1, "ok", 1.0)


def test_program_errors_and_bad_tests_are_errors() -> None:
    assert run_code("def f(:\n", "assert True").status == "error"
    assert run_code("raise ValueError('boom')", "assert True").status == "error"
    assert run_code("x = 1", "assert (((").status == "error"
    assert run_code("x = 1", []).status == "error"
    assert run_code(None, "assert True").status == "error"  # type: ignore[arg-type]


def test_stdin_stdout_cases() -> None:
    program = "n = int(input())\nprint(n * 2)   \nprint()\n"
    cases = [{"input": "3\n", "output": "6"}, {"input": "5\n", "output": "10\n"}, {"input": "1", "output": "3"}]
    result = run_code(program, cases)
    assert (result.passed, result.total, result.status) == (2, 3, "fail")
    assert run_code(program, cases[:2]).status == "ok"
    assert run_code("print(1/0)", cases[:1]).status == "error"
    assert run_code("print(6)\nraise SystemExit(3)", cases[:1]).status == "error"  # right output, bad exit
    closes_pipes = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(100)\n"
    assert run_code(closes_pipes, cases[:1], timeout_s=1).status == "timeout"


def test_binary_and_huge_programs_do_not_crash() -> None:
    assert run_code("\x00\xff\ud800 garbage", "assert True").status == "error"
    assert run_code("x = 1\n" * 100_000, "assert x == 1").status == "ok"
    assert run_code("#" * 2_000_000, "assert True").status == "error"


def test_humaneval_canonical_solutions_pass_and_stubs_fail() -> None:
    """The full sweep: all 164 canonical solutions pass; each with its body replaced by `pass` fails."""
    problems = load_humaneval()
    assert len(problems) == 164
    jobs = [(p.solution, p.tests) for p in problems] + [(p.prompt + "    pass\n", p.tests) for p in problems]
    results = run_code_many(jobs, timeout_s=10)
    solved, stubs = results[:164], results[164:]
    assert [p.task_id for p, r in zip(problems, solved, strict=True) if r.status != "ok"] == []
    assert [p.task_id for p, r in zip(problems, stubs, strict=True) if r.passed] == []


def test_jsonl_loader_reads_both_shapes(tmp_path) -> None:
    records = [
        {
            "task_id": "he/0",
            "prompt": "def f(x):\n",
            "canonical_solution": "    return x\n",
            "entry_point": "f",
            "test": "def check(c):\n    assert c(2) == 2\n",
        },
        {"prompt": "double it", "tests": [{"input": "2\n", "output": "4\n"}], "solution": "print(2*int(input()))"},
        {
            "question": "add",
            "input_output": json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"]}),
            "solution": "print(sum(map(int, input().split())))",
        },
    ]
    path = tmp_path / "code.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in records) + "\n\n")
    problems = load_code_jsonl(path)
    assert [p.task_id for p in problems] == ["he/0", "1", "2"]
    assert problems[0].entry_point == "f" and problems[0].tests.endswith("check(f)\n")
    assert problems[2].tests == [{"input": "1 2\n", "output": "3\n"}]
    assert all(r.status == "ok" for r in run_code_many([(p.solution, p.tests) for p in problems]))


def test_jsonl_loader_names_the_bad_line(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x", "tests": []}\n{"nothing": 1}\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        load_code_jsonl(path)
    with pytest.raises(UserError, match="does not exist"):
        load_code_jsonl(tmp_path / "missing.jsonl")


def test_code_reward_pass_fraction_and_all_or_nothing() -> None:
    completions = [
        "<think>try</think>```python\ndef sq(x):\n    return x * x if x < 3 else 0\n```",
        "```python\ndef sq(x):\n    return x * x\n```",
        "no code at all",
        "",
    ]
    tests = "assert sq(2) == 4\nassert sq(3) == 9\n"
    fraction = make_reward("code")([""] * 4, completions, tests=tests)
    assert fraction.scores == [0.5, 1.0, 0.0, 0.0]
    assert fraction.metrics["code/extracted"] == 0.5 and fraction.metrics["code/status_fail"] == 1
    strict = make_reward("code", all_or_nothing=True)([""] * 4, completions, tests=tests)
    assert strict.scores == [0.0, 1.0, 0.0, 0.0]


def test_rlimits_level_still_grades_and_warns_loudly(caplog: pytest.LogCaptureFixture, fresh_levels: None) -> None:
    with caplog.at_level(logging.WARNING, logger="posttrain.rewards.sandbox"):
        assert isolation_level("rlimits") == "rlimits"
    assert "SANDBOX IS WEAK" in caplog.text
    assert run_code("x = 2", "assert x == 2", isolation="rlimits").status == "ok"
    assert run_code("while True:\n    pass", "assert True", timeout_s=1, isolation="rlimits").status == "timeout"
    with pytest.raises(ValueError, match="not available"):
        isolation_level("nonsense")


@as_root
def test_rlimits_never_runs_code_as_root() -> None:
    assert os.getuid() == 0  # the same checks fail here, in the caller
    unprivileged = "import os\nassert os.getuid() != 0 and os.geteuid() != 0 and os.getgid() != 0\n"
    assert run_code("x = 1", unprivileged + "assert not os.getgroups()", isolation="rlimits").status == "ok"
    prints_uid = run_code("import os\nprint(os.getuid())", [{"input": "", "output": "0"}], isolation="rlimits")
    assert (prints_uid.passed, prints_uid.status) == (0, "fail")
    if not runs_unprivileged(Interpreter(host_interpreter())):  # e.g. pyenv under /root: a mirror stands in
        mirror = unprivileged_interpreter()
        assert mirror is not None and mirror.path != host_interpreter()


@as_root
def test_rlimits_refuses_with_one_line_when_no_interpreter_is_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_levels: None
) -> None:
    if runs_unprivileged(Interpreter(host_interpreter())):
        pytest.skip("any uid can run this interpreter, so rlimits never has to refuse here")
    private = tmp_path / "private"  # where the mirror is built: a directory no other uid can enter
    private.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    _break(("bwrap", "unshare"), tmp_path / "shims", monkeypatch)
    assert available_levels() == ()
    for requested in ("auto", "rlimits"):
        with pytest.raises(UserError, match="install bubblewrap") as refused:
            isolation_level(requested)
        assert "\n" not in str(refused.value)
    with pytest.raises(UserError, match="never run as root"):
        run_code("x = 1", "assert x == 1")


@as_root
def test_a_mirror_damaged_by_a_temp_cleaner_is_rebuilt(fresh_levels: None) -> None:
    if runs_unprivileged(Interpreter(host_interpreter())):
        pytest.skip("any uid can run this interpreter, so no mirror is made")
    shared = Path(tempfile.mkdtemp(prefix="posttrain-test-tmp-", dir="/tmp"))  # reachable by every uid
    shared.chmod(0o755)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tempfile, "tempdir", str(shared))
            mirror = unprivileged_interpreter()
            assert mirror is not None and Path(mirror.path).is_relative_to(shared)
            stdlib = Path(mirror.path).parents[1] / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
            (stdlib / "encodings" / "__init__.py").unlink()
            assert not runs_unprivileged(mirror)
            unprivileged_interpreter.cache_clear()
            assert unprivileged_interpreter() == mirror and runs_unprivileged(mirror)
    finally:
        shutil.rmtree(shared)
