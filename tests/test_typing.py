"""The typed API, checked by mypy itself: tests/typing/typed_ok.py must pass with the types
it reveals, and tests/typing/typed_wrong.py must fail with the errors expected of it."""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[tuple[int, str]]]:
    cache = tmp_path_factory.mktemp("mypy-cache")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            "--show-absolute-path",
            "--cache-dir",
            str(cache),
            str(OK),
            str(WRONG),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=HERE.parent,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
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
