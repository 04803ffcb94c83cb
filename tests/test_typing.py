"""The typed API, checked by mypy itself, and by pyright: tests/typing/typed_ok.py must pass
with the types it reveals, and tests/typing/typed_wrong.py must fail with the errors
expected of it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
OK = HERE / "typing" / "typed_ok.py"
WRONG = HERE / "typing" / "typed_wrong.py"

# The marker comment on a line of typed_ok.py -> the type mypy must reveal there.
REVEALED = {
    "R1": "asyncjobs.job.JobId[int]",
    "R2": "int",
    "R3": "list[str]",
    "R4": "int | None",
    "R5": "Any",
    "R6": "Any",
    "R7": "int",
    "R8": "asyncjobs.job.JobId[int]",
    "R9": "list[str] | None",
    "R10": "Any | None",
    "R11": "list[asyncjobs.job.JobId[int]]",
    "R12": "object",
}
# The marker comment on a line of typed_wrong.py -> a piece of the error mypy must give there.
ERRORS = {
    "E1": 'No overload variant of "enqueue" of "Client" matches argument types '
    '"Task[[int, int], Coroutine[Any, Any, int]]", "int", "str"',
    "E2": '"int" has no attribute "upper"',
    "E3": 'Unsupported operand types for + ("None" and "int")',
    "E4": 'No overload variant of "enqueue" of "SyncClient" matches argument types '
    '"Task[[int, int], Coroutine[Any, Any, int]]", "str", "int"',
}


def _markers(path: Path) -> dict[int, str]:
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(r"#\s*([RE]\d+)\s*$", line)
        if match:
            found[number] = match.group(1)
    return found


def _check_examples(checker: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run type checker `checker` (a module) on the two example files; it exits 1 for the
    errors it finds (the wrong file has them), anything else is a failure to run."""
    done = subprocess.run(
        [sys.executable, "-m", checker, *options, str(OK), str(WRONG)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=HERE.parent,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[tuple[int, str]]]:
    cache = tmp_path_factory.mktemp("mypy-cache")
    done = _check_examples(
        "mypy",
        "--strict",
        "--show-error-codes",
        "--no-error-summary",
        "--hide-error-context",
        "--no-pretty",
        "--show-absolute-path",
        "--cache-dir",
        str(cache),
    )
    lines: dict[Path, list[tuple[int, str]]] = {OK: [], WRONG: []}
    for line in done.stdout.splitlines():
        match = re.match(r"(.+?):(\d+): (.*)$", line)
        assert match, line
        lines[Path(match.group(1))].append((int(match.group(2)), match.group(3)))
    return lines


def test_the_typed_example_passes_and_reveals_the_task_types(
    mypy_output: dict[Path, list[tuple[int, str]]],
) -> None:
    output = mypy_output[OK]
    errors = [m for _, m in output if m.startswith("error:")]
    assert errors == []
    revealed = {
        number: m.removeprefix('note: Revealed type is "').removesuffix('"')
        for number, m in output
        if m.startswith("note: Revealed type is")
    }
    markers = _markers(OK)
    assert set(markers.values()) == set(REVEALED)
    for number, marker in markers.items():
        assert revealed.get(number) == REVEALED[marker], (marker, revealed.get(number))


def test_wrong_calls_fail_the_type_check_with_the_expected_errors(
    mypy_output: dict[Path, list[tuple[int, str]]],
) -> None:
    output = mypy_output[WRONG]
    markers = _markers(WRONG)
    assert set(markers.values()) == set(ERRORS)
    for number, marker in markers.items():
        messages = [m for n, m in output if n == number and m.startswith("error:")]
        assert any(ERRORS[marker] in m for m in messages), (marker, output)
    # Nothing else is wrong there: each error is one the file means to make.
    assert {n for n, m in output if m.startswith("error:")} == set(markers)


# pyright says the same of each marked line, in its own words; `stored: int = job_id` is
# narrowed to the JobId it was given (R6), where mypy keeps the declared int, and a batch of
# two tasks' calls gives the union of their results (R12), where mypy joins them.
PYRIGHT_REVEALED = {
    **{marker: revealed.replace("asyncjobs.job.", "") for marker, revealed in REVEALED.items()},
    "R6": "int",
    "R12": "int | list[str]",
}


def test_pyright_agrees(tmp_path: Path) -> None:
    """pyright types an async function's result as `types.CoroutineType`: a Task must still
    match the client's overload for async tasks, and give `wait()` the function's result."""
    pytest.importorskip("pyright")
    config = tmp_path / "pyrightconfig.json"
    config.write_text(json.dumps({"pythonVersion": "3.11", "typeCheckingMode": "standard"}))
    done = _check_examples(
        "pyright", "--outputjson", "--pythonpath", sys.executable, "--project", str(config)
    )
    found: dict[Path, list[tuple[int, str, str]]] = {OK: [], WRONG: []}
    for item in json.loads(done.stdout)["generalDiagnostics"]:
        line = item["range"]["start"]["line"] + 1
        found[Path(item["file"])].append((line, item["severity"], item["message"]))
    assert [d for d in found[OK] if d[1] == "error"] == []
    revealed = {
        line: re.sub(r'^Type of ".*" is "(.*)"$', r"\1", message, flags=re.S)
        for line, severity, message in found[OK]
        if severity == "information"
    }
    for number, marker in _markers(OK).items():
        assert revealed.get(number) == PYRIGHT_REVEALED[marker], (marker, revealed.get(number))
    errors = {line for line, severity, _ in found[WRONG] if severity == "error"}
    assert errors == set(_markers(WRONG)), found[WRONG]
