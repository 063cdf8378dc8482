"""The hostile-input campaign: every command, every class of bad input, one promise.

Each case runs a command on something malformed or hostile and asserts what a user is
promised: exit code 1 (130 for an interrupt), exactly one line on stderr that names the
file, line or field where there is one, no traceback, and no file created or changed.
Organised by input class: traces, cluster specs and files, plans, measurement files,
numeric options, output paths; then interrupts, an unprivileged user, and loaders fed
random bytes and random rows (hypothesis).
"""

from __future__ import annotations

import gzip
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import optimizer
from cli import app
from optimizer.common.errors import OptimizerError

ROOT = Path(__file__).parent.parent
TRACE = ROOT / "traces" / "sharegpt_batch_2k.csv"
HEADER = "request_id,arrival_s,prompt_tokens,output_tokens\n"
runner = CliRunner()


def _snapshot(folder: Path) -> dict:
    """Every file under `folder` with its size, mode and modification time."""
    return {p.relative_to(folder): (p.lstat().st_size, p.lstat().st_mode, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def _one_line_error(args: list[str], folder: Path, *, names: str = "", code: int = 1) -> str:
    """Run the CLI in `folder`; assert the promise; return the error line."""
    before = _snapshot(folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = runner.invoke(app, args)
    finally:
        os.chdir(cwd)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stderr or result.stdout}"
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert names in lines[0], lines[0]
    assert _snapshot(folder) == before, "an output was created or changed"
    return lines[0]


# Trace files: (file name, bytes, what the error line must name).
BAD_TRACES = {
    "empty": ("t.csv", b"", "t.csv"),
    "header only": ("t.csv", HEADER.encode(), "t.csv"),
    "binary": ("t.csv", bytes(range(256)) * 4, "t.csv"),
    "wrong delimiter": ("t.csv", b"request_id;arrival_s;prompt_tokens;output_tokens\na;0;10;5\n", "t.csv"),
    "nan tokens": ("t.csv", (HEADER + "a,0,nan,5\n").encode(), "t.csv:2: prompt_tokens"),
    "inf tokens": ("t.csv", (HEADER + "a,0,inf,5\n").encode(), "t.csv:2: prompt_tokens"),
    "negative tokens": ("t.csv", (HEADER + "a,0,-3,5\n").encode(), "t.csv:2: prompt_tokens"),
    "fractional tokens": ("t.csv", (HEADER + "a,0,10.5,5\n").encode(), "t.csv:2: prompt_tokens"),
    "huge tokens": ("t.csv", (HEADER + "a,0,1e30,5\n").encode(), "t.csv:2: prompt_tokens"),
    "huge time": ("t.csv", (HEADER + "a,1e30,10,5\n").encode(), "t.csv:2: arrival_s"),
    "year 9999": ("t.csv", b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,5\n9999-01-01 00:00:00,10,5\n", "t.csv:3: TIMESTAMP"),
    "negative time": ("t.csv", (HEADER + "a,-1,10,5\n").encode(), "t.csv:2: arrival_s"),
    "text in a number column": ("t.csv", (HEADER + "a,0,ten,5\n").encode(), "t.csv:2: prompt_tokens"),
    "duplicate ids": ("t.csv", (HEADER + "a,0,10,5\na,0,11,5\n").encode(), "t.csv"),
    "missing column": ("t.csv", b"request_id,arrival_s,output_tokens\na,0,10\n", "t.csv"),
    "misspelt column": ("t.csv", b"request_id,arrival_s,prompt_tokns,output_tokens\na,0,10,5\n", "t.csv"),
    "truncated json lines": ("t.jsonl", b'{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 1, "inp', "t.jsonl:2"),
    "json lines of numbers": ("t.jsonl", b"1\n2\n", "t.jsonl"),
    "truncated parquet": ("t.parquet", b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02\x15\x00\x12\x00\x00", "t.parquet"),
    "gzip": ("t.csv", gzip.compress((HEADER + "a,0,10,5\n").encode()), "t.csv"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRACES))
def test_bad_traces_are_one_line(case, tmp_path):
    """Tests that a malformed trace is one line naming the file (and line and column where
    there is one), exit 1, and nothing written, for `trace stats` and for `solve --out`."""
    name, content, names = BAD_TRACES[case]
    (tmp_path / name).write_bytes(content)
    _one_line_error(["trace", "stats", name], tmp_path, names=names)
    _one_line_error(["solve", name, "--solver", "lpt", "--out", "plan.csv"], tmp_path, names=names)


def test_a_folder_or_missing_file_as_a_trace_is_one_line(tmp_path):
    """Tests that a folder or a missing file given as a trace (or a history, or a plan) is one line."""
    (tmp_path / "folder").mkdir()
    _one_line_error(["trace", "stats", "folder"], tmp_path, names="folder")
    _one_line_error(["trace", "stats", "nothing.csv"], tmp_path, names="nothing.csv")
    _one_line_error(["solve", str(TRACE), "--predictor", "folder"], tmp_path, names="folder")
    _one_line_error(["simulate", str(TRACE), "--plan", "nothing.csv"], tmp_path, names="nothing.csv")


@pytest.mark.parametrize("content", [b"\xef\xbb\xbf", b""])
def test_crlf_and_byte_order_marks_load(content, tmp_path):
    """Tests that traces saved by Windows tools (CRLF line ends, a UTF-8 byte-order mark) load,
    CSV and JSON lines alike."""
    (tmp_path / "t.csv").write_bytes(content + (HEADER + "a,0,10,5\r\nb,1,20,6\r\n").encode())
    (tmp_path / "t.jsonl").write_bytes(content + b'{"timestamp": 0, "input_length": 10, "output_length": 5}\r\n')
    assert optimizer.load_trace(tmp_path / "t.csv").num_requests == 2
    assert optimizer.load_trace(tmp_path / "t.jsonl").num_requests == 1


def test_ids_keep_their_quotes(tmp_path):
    """Tests that an id written by a user with a leading quote is kept as written, so 'a and a are
    two requests (only the quote this tool adds on export is removed on reading)."""
    (tmp_path / "t.csv").write_text(HEADER + "'a,0,10,5\na,0,10,5\n")
    assert optimizer.load_trace(tmp_path / "t.csv").requests["request_id"].tolist() == ["'a", "a"]


BAD_CLUSTERS = {
    "unknown gpu": ("v100-tp4:2", "v100"),
    "zero replicas": ("h100-tp4:0", "h100-tp4:0"),
    "1e8 replicas": ("h100-tp4:100000000", "h100-tp4:100000000"),
    "bad tp": ("h100-tp3:2", "h100-tp3"),
    "empty group": ("h100-tp4:2,,a100-tp4:2", "empty group"),
    "not a spec": ("!!", "'!!'"),
    "model that does not fit": ("llama-3.1-405b@l4-tp1:1", "does not fit"),
}
BAD_CLUSTER_FILES = {
    "binary": ("c.toml", bytes(range(256)), "c.toml"),
    "not toml": ("c.toml", b"[[replicas]\ngpu=", "c.toml"),
    "name is a list": ("c.toml", b'[[replicas]]\ngpu = "h100"\ntp = 4\nname = [1]\n', "c.toml replica group 1: name"),
    "nan in json": ("c.json", b'{"replicas": [{"gpu": "h100", "tp": 4, "activation_reserve_gib": NaN}]}', "c.json replica group 1: activation_reserve_gib"),
    "huge max_num_seqs": ("c.toml", b'[[replicas]]\ngpu = "h100"\ntp = 4\nmax_num_seqs = 1000000000000\n', "max_num_seqs in c.toml"),
    "unknown key": ("c.toml", b'[[replicas]]\ngpu = "h100"\ntp = 4\ncolour = "red"\n', "c.toml replica group 1: unknown field 'colour'"),
    "no groups": ("c.toml", b"x = 1\n", "c.toml"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLUSTERS))
def test_bad_cluster_specs_are_one_line(case, tmp_path):
    """Tests that a bad inline cluster is one line naming the group, before any work."""
    spec, names = BAD_CLUSTERS[case]
    _one_line_error(["bounds", str(TRACE), "--replicas", spec], tmp_path, names=names)


@pytest.mark.parametrize("case", sorted(BAD_CLUSTER_FILES))
def test_bad_cluster_files_are_one_line(case, tmp_path):
    """Tests that a bad cluster file is one line naming the file and the group or key."""
    name, content, names = BAD_CLUSTER_FILES[case]
    (tmp_path / name).write_bytes(content)
    _one_line_error(["bounds", str(TRACE), "--replicas", name], tmp_path, names=names)


BAD_PLANS = {
    "empty": (b"", "p.csv"),
    "binary": (bytes(range(256)), "p.csv"),
    "wrong columns": (b"a,b\n1,2\n", "p.csv"),
    "unknown request": (b"request_id,replica,order\nnope,h100-tp4-0,0\n", "p.csv"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
def test_bad_plans_are_one_line(case, tmp_path):
    """Tests that a bad plan file is one line naming it, for `simulate --plan` (and `plan validate`
    lists every broken rule, one per line, exit 1)."""
    content, names = BAD_PLANS[case]
    (tmp_path / "p.csv").write_bytes(content)
    _one_line_error(["simulate", str(TRACE), "--plan", "p.csv", "--out", "s.csv"], tmp_path, names=names)


BAD_MEASUREMENTS = {
    "empty": b"",
    "binary": bytes(range(256)),
    "header only": b"model,hardware,tensor_parallel,batch_size,prompt_size,token_size,prompt_time,token_time\n",
    "nan times": b"model,hardware,tensor_parallel,batch_size,prompt_size,token_size,prompt_time,token_time\nm,h100,4,1,128,1,nan,0.03\n",
    "huge batch": b"model,hardware,tensor_parallel,batch_size,prompt_size,token_size,prompt_time,token_time\nm,h100,4,100000000,128,1,0.1,0.03\n",
}


@pytest.mark.parametrize("case", sorted(BAD_MEASUREMENTS))
def test_bad_measurement_files_are_one_line(case, tmp_path):
    """Tests that a bad measurements file is one line naming it, for `profile fit` and `profile calibrate`."""
    (tmp_path / "m.csv").write_bytes(BAD_MEASUREMENTS[case])
    _one_line_error(["profile", "fit", "m.csv"], tmp_path, names="m.csv")
    _one_line_error(["profile", "calibrate", "m.csv", "--replica", "llama-3.1-8b@h100-tp1", "--out", "p.json"], tmp_path, names="m.csv")


# Every numeric option at its edges: (command, option, bad values).
NUMERIC_OPTIONS = [
    (["solve", str(TRACE)], "--time-limit", ["0", "-1", "inf", "nan", "1e400", "abc"]),
    (["solve", str(TRACE)], "--seed", ["-1", "1180591620717411303424", "abc", "1.5"]),
    (["solve", str(TRACE)], "--length-error", ["-0.1", "inf", "nan", "abc"]),
    (["solve", str(TRACE)], "--arrival-rate", ["0", "-1", "inf", "nan"]),
    (["simulate", str(TRACE)], "--jitter", ["-1", "inf", "nan"]),
    (["simulate", str(TRACE)], "--slo-ttft", ["0", "-2", "inf", "nan"]),
    (["simulate", str(TRACE)], "--slow", ["h100-tp4-0@0:1e400", "h100-tp4-0@0:0", "h100-tp4-0@-1:2", "h100-tp4-0@nan:2", "nope@0:2", "x"]),
    (["simulate", str(TRACE)], "--fail", ["h100-tp4-0@inf", "h100-tp4-0@-1", "nope@3", "x"]),
    (["compare", str(TRACE)], "--time-limit", ["0", "inf"]),
    (["predict", str(TRACE)], "--holdout", ["0", "1", "1.5", "nan"]),
]


@pytest.mark.parametrize("command, option, values", NUMERIC_OPTIONS, ids=lambda v: v if isinstance(v, str) else "")
def test_numeric_options_at_their_edges_are_one_line(command, option, values, tmp_path):
    """Tests that every out-of-range, non-finite or non-numeric option value is one line naming
    the option (or the replica it names), exit 1, before any work."""
    for value in values:
        line = _one_line_error([*command, option, value, "--out", "o.csv"], tmp_path)
        assert option in line or value.split("@")[0] in line or "REPLICA@" in line, line


@pytest.mark.parametrize("path, names", [
    ("missing/plan.csv", "folder missing does not exist"),
    (".", "is a directory"),
    ("", "directory"),  # typer reads an empty path as "."
    ("/dev/full", "/dev/full"),
])
def test_bad_output_paths_are_one_line_before_any_work(path, names, tmp_path):
    """Tests that an output that cannot be written is one line, and (but for a full device,
    which fails only when written) found before any work."""
    _one_line_error(["solve", str(TRACE), "--solver", "lpt", "--out", path], tmp_path, names=names)


def test_special_files_and_links_are_written_not_replaced(tmp_path):
    """Tests that /dev/null stays a device, a symbolic link stays a link (its target gets the
    plan), and an existing file keeps its mode."""
    (tmp_path / "kept.csv").write_text("old")
    os.chmod(tmp_path / "kept.csv", 0o640)
    (tmp_path / "target.csv").write_text("old")
    (tmp_path / "link.csv").symlink_to("target.csv")
    for out in ("/dev/null", str(tmp_path / "kept.csv"), str(tmp_path / "link.csv")):
        result = runner.invoke(app, ["solve", str(TRACE), "--solver", "lpt", "--out", out, "-q"])
        assert result.exit_code == 0, result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert stat.S_IMODE((tmp_path / "kept.csv").stat().st_mode) == 0o640
    assert (tmp_path / "kept.csv").read_text().startswith("request_id")
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "target.csv").read_text().startswith("request_id")


def test_several_outputs_are_all_or_nothing(tmp_path):
    """Tests that a command with several outputs checks all of them first: a bad second output
    leaves the first unwritten."""
    _one_line_error(["simulate", str(TRACE), "--out", "a.csv", "--summary", "missing/s.json"], tmp_path, names="missing")


def _cli(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("after_s", [0.3, 4.0], ids=["while starting", "while solving"])
def test_an_interrupt_is_one_line_exit_130_and_leaves_files_alone(after_s, tmp_path):
    """Tests that Ctrl-C (SIGINT) at start-up or during planning prints one line, exits 130 and
    leaves the user's existing output file exactly as it was."""
    plan = tmp_path / "plan.csv"
    plan.write_text("my old plan\n")
    process = _cli(["solve", str(TRACE), "--out", str(plan), "--time-limit", "60"], cwd=tmp_path)
    time.sleep(after_s)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted; no output was written or changed."]
    assert plan.read_text() == "my old plan\n" and sorted(p.name for p in tmp_path.iterdir()) == ["plan.csv"]


def _as_nobody(args: list[str]) -> tuple[int, str]:
    """Run the CLI in a forked child that has become the user nobody (exec'ing a new Python
    would need read access to wherever Python is installed, often under /root)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root for good, run, report, exit
        code = 99
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            result = runner.invoke(app, args)
            os.write(write, result.stderr.encode()[:60000])
            code = result.exit_code
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        stderr = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_unreadable_and_unwritable_paths_as_an_unprivileged_user(tmp_path):
    """Tests, as the unprivileged user nobody, that an unreadable trace and an unwritable folder
    are one line each and write nothing (root reads and writes everything, so this is the user
    who meets these errors)."""
    os.chmod(tmp_path, 0o755)
    trace = tmp_path / "secret.csv"
    trace.write_text(HEADER + "a,0,10,5\n")
    os.chmod(trace, 0o600)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    public = tmp_path / "public.csv"
    public.write_text(HEADER + "a,0,10,5\n")
    os.chmod(public, 0o644)
    for args, names in ((["trace", "stats", str(trace)], "secret.csv"),
                        (["solve", str(public), "--solver", "lpt", "--out", str(locked / "plan.csv")], "locked")):
        code, stderr = _as_nobody(args)
        assert code == 1, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], stderr
    assert list(locked.iterdir()) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl", ".parquet"]))
def test_random_bytes_never_crash_the_loader(content, suffix, tmp_path):
    """Tests that any bytes given as a trace either load or raise the project's own error."""
    path = tmp_path / f"random{suffix}"
    path.write_bytes(content)
    try:
        optimizer.load_trace(path)
    except OptimizerError as exc:
        assert "\n" not in str(exc)


_cell = st.one_of(st.integers(-5, 10**7).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.text(alphabet="ab =+-'\"0123456789.,;", max_size=6), st.just(""))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_cell, _cell, _cell, _cell), min_size=1, max_size=6),
       header=st.sampled_from([HEADER, "TIMESTAMP,ContextTokens,GeneratedTokens,x\n", "arrived_at,num_prefill_tokens,num_decode_tokens,y\n"]))
def test_random_rows_load_or_are_one_line(rows, header, tmp_path):
    """Tests that valid-looking rows with random cells load with every request kept, or are one
    line naming the file."""
    path = tmp_path / "rows.csv"
    path.write_text(header + "".join(",".join(row) + "\n" for row in rows))
    try:
        trace = optimizer.load_trace(path)
    except OptimizerError as exc:
        assert "rows.csv" in str(exc) and "\n" not in str(exc)
    else:
        assert trace.num_requests + trace.num_excluded == len(rows)
