"""Keep the deployment examples (examples/cron, examples/aws-batch, examples/README.md) true to the code.

Offline and fast: no Terraform provider, Docker daemon or AWS account is involved. What is checked:

* every ``spotlake ...`` command line in the examples parses with the real ``spotlake.cli.build_parser()``
  using exact option names only (argparse would accept abbreviations, which could hide a typo or a
  renamed flag);
* the shell scripts pass ``bash -n``, answer ``-h``, validate their input, and drive stub
  ``terraform``/``aws``/``docker`` commands the way the README says;
* the cron wrapper's exit-code policy (75 is not an error), with stubs and with the real CLI;
* Terraform: every file parses as HCL2 (python-hcl2), every ``var.X`` declared (and every variable
  used), CLI-mirroring defaults equal to the CLI's, IAM actions from an allow-list with ``"*"``
  resources only where AWS has no resource type, ``terraform fmt -check`` when Terraform is
  installed; every ``#checkov:skip`` names a reason, and checkov (``make checkov``, in its own venv)
  catches a weakened copy;
* the Dockerfile installs this repository, its base image is pinned by digest, and its entrypoint
  is the ``spotlake`` console script.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import hcl2
import pytest

from spotlake.cli import EXIT_LOCKED, build_parser

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CRON = EXAMPLES / "cron"
BATCH = EXAMPLES / "aws-batch"
TF = BATCH / "terraform"
SCRIPTS = BATCH / "scripts"
WRAPPER = CRON / "spotlake-collect.sh"
SHELL_SCRIPTS = sorted(EXAMPLES.rglob("*.sh"))
TF_FILES = sorted(TF.glob("*.tf"))

#: Every IAM action the examples may grant: what `spotlake collect azure` with the job's flags calls
#: (docs/operations.md, docs/sps-and-credentials.md), Scheduler's SubmitJob, and role trust.
ALLOWED_ACTIONS = frozenset(
    {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "ssm:GetParameter",
        "kms:Decrypt",
        "timestream:WriteRecords",
        "timestream:DescribeEndpoints",
        "logs:PutLogEvents",
        "cloudwatch:PutMetricData",
        "batch:SubmitJob",
        "sts:AssumeRole",
    }
)
#: Actions that have no IAM resource type, hence the only ones allowed on resources = ["*"].
RESOURCELESS_ACTIONS = frozenset({"cloudwatch:PutMetricData", "timestream:DescribeEndpoints"})


# --- the CLI's parser ---------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse has no public accessor for subparsers; its _actions list is stable since 3.2.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def check_cli(argv: list[str], where: str) -> argparse.Namespace:
    """Parse ``argv`` (without the program name) and insist on exact option names."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports the error on stderr and exits 2
        pytest.fail(f"{where}: `spotlake {shlex.join(argv)}` does not parse (exit {exc.code})")
    command = _subparsers(parser)[argv[0]]
    if argv[0] == "collect":
        command = _subparsers(command)[argv[1]]
    known = {opt for action in command._actions for opt in action.option_strings}
    for token in argv:
        if token.startswith("--"):
            name = token.split("=", 1)[0]
            assert name in known, f"{where}: {name} is not an exact option of `spotlake {argv[0]}`"
    return args


#: ``spotlake <subcommand>`` for every subcommand the real parser has.
SPOTLAKE_COMMAND = re.compile(
    r"(?<![\w/.-])spotlake\s+(?=(?:"
    + "|".join(sorted(_subparsers(build_parser())))
    + r")(?:\s|$))"
)


def commands_in_text(text: str) -> Iterator[list[str]]:
    """Every `spotlake <subcommand> ...` in shell-ish text, continuation lines joined, up to the end
    of the shell word list (a pipe, `;`, `&&`, `)`, a closing backtick or quote, or a comment)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        for match in SPOTLAKE_COMMAND.finditer(line):
            rest = re.split(r"\s(?:\||;|&&|\|\||#)|[`)\"']\s*$|`", line[match.end() :])[0]
            yield shlex.split(rest)


def test_the_command_regex_finds_commands_and_only_commands() -> None:
    text = (
        "x\n  $ spotlake status --store /a  # note\n"
        "spotlake show \\\n  --changes | head\n"
        "the spotlake project; `spotlake status/show`\n"
    )
    assert list(commands_in_text(text)) == [["status", "--store", "/a"], ["show", "--changes"]]


def test_check_cli_rejects_abbreviations_and_unknown_flags() -> None:
    with pytest.raises(AssertionError, match="not an exact option"):
        check_cli(["collect", "azure", "--dynamodb", "T"], "self-test")  # argparse alone accepts it
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_cli(["collect", "azure", "--no-such-flag"], "self-test")


def test_readme_commands_parse() -> None:
    text = (EXAMPLES / "README.md").read_text()
    found = list(commands_in_text(text))
    assert len(found) >= 5, found
    for argv in found:
        check_cli(argv, "examples/README.md")
    # The README shows the command a deployment with the default variables runs, exactly.
    readme_job = next(a for a in found if a[:2] == ["collect", "azure"] and "--credentials" in a)
    assert readme_job == default_job_command()


# --- cron --------------------------------------------------------------------------------------


def wrapper_base_command() -> list[str]:
    match = re.search(r'^\S*\s*spotlake (collect azure [^\n"]*)"\$@"', WRAPPER.read_text(), re.M)
    assert match, 'the wrapper must run `spotlake collect azure ... "$@"`'
    return shlex.split(match.group(1))


def test_cron_lines_parse_through_the_wrapper() -> None:
    base = wrapper_base_command()
    assert base == ["collect", "azure", "--quiet"]
    lines = [ln.lstrip("# ").strip() for ln in (CRON / "spotlake.crontab").read_text().splitlines()]
    entries = [ln for ln in lines if "spotlake-collect.sh" in ln and re.match(r"^[*/0-9,-]+\s", ln)]
    assert len(entries) == 2, entries
    assert entries[0].startswith("*/10 ")  # the active line: every 10 minutes
    for entry in entries:
        fields = entry.split(None, 5)
        assert fields[0] == "*/10" and fields[1:5] == ["*"] * 4, entry
        argv = shlex.split(fields[5])
        assert argv[0].endswith("/examples/cron/spotlake-collect.sh")
        check_cli(base + argv[1:], "examples/cron/spotlake.crontab")


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    """A venv whose `spotlake` records its argv and exits with $STUB_EXIT."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    # Like a real activate script, it reads a variable cron leaves unset: the wrapper must cope.
    (venv / "bin" / "activate").write_text(f'_OLD_PS1="$PS1"\nexport PATH="{venv}/bin:$PATH"\n')
    stub = venv / "bin" / "spotlake"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        'printf "%s\\n" "$@" > "$STUB_ARGS"\n'
        'echo "tenant=${AZURE_TENANT_ID:-unset}"\n'
        'echo "stub says hello" >&2\n'
        '[[ -z "${STUB_SLEEP:-}" ]] || exec sleep "$STUB_SLEEP"\n'
        'exit "${STUB_EXIT:-0}"\n'
    )
    stub.chmod(0o755)
    return venv


def run_wrapper(
    tmp_path: Path, venv: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "SPOTLAKE_VENV": str(venv),
        "SPOTLAKE_LOG_DIR": str(tmp_path / "logs"),
        "SPOTLAKE_ENV_FILE": str(tmp_path / "env"),
        "STUB_ARGS": str(tmp_path / "args"),
        **(env or {}),
    }
    return subprocess.run(
        [str(WRAPPER), *args], env=full_env, capture_output=True, text=True, timeout=30, check=False
    )


def log_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in sorted((tmp_path / "logs").glob("collect-*.log")))


@pytest.mark.parametrize(
    ("spotlake_exit", "wrapper_exit", "logged", "alerts"),
    [
        (0, 0, "done", False),
        (EXIT_LOCKED, 0, "skipped: another run holds the store's lock", False),
        (3, 3, "partial: committed", False),
        (1, 1, "failed (exit 1)", True),
        (2, 2, "usage or configuration error", True),
    ],
)
def test_wrapper_exit_policy(
    tmp_path: Path, fake_venv: Path, spotlake_exit: int, wrapper_exit: int, logged: str, alerts: bool
) -> None:
    done = run_wrapper(tmp_path, fake_venv, "--store", "/data/x", env={"STUB_EXIT": str(spotlake_exit)})
    assert done.returncode == wrapper_exit, done.stderr
    assert done.stdout == ""
    assert bool(done.stderr) is alerts, done.stderr  # cron mails stderr: only real failures
    log = log_text(tmp_path)
    assert logged in log
    assert "stub says hello" in log and "start: spotlake collect azure --quiet --store /data/x" in log
    argv = (tmp_path / "args").read_text().split()
    assert argv == ["collect", "azure", "--quiet", "--store", "/data/x"]


def test_wrapper_stops_a_run_that_overstays(tmp_path: Path, fake_venv: Path) -> None:
    if shutil.which("timeout") is None:
        pytest.skip("no timeout(1) here; the wrapper then runs without a time limit")
    started = time.monotonic()
    done = run_wrapper(tmp_path, fake_venv, env={"STUB_SLEEP": "20", "SPOTLAKE_RUN_TIMEOUT": "0.3"})
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert "stopped after 0.3" in done.stderr and "stopped: still running after 0.3" in log_text(tmp_path)


def test_wrapper_sources_a_private_env_file_and_refuses_a_readable_one(
    tmp_path: Path, fake_venv: Path
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("AZURE_TENANT_ID=tenant-from-file\n")
    env_file.chmod(0o600)
    done = run_wrapper(tmp_path, fake_venv)
    assert done.returncode == 0, done.stderr
    assert "tenant=tenant-from-file" in log_text(tmp_path)

    env_file.chmod(0o644)
    (tmp_path / "args").unlink()
    done = run_wrapper(tmp_path, fake_venv)
    assert done.returncode == 2
    assert "chmod 600" in done.stderr
    assert not (tmp_path / "args").exists()  # spotlake never ran


def test_wrapper_needs_a_venv_and_prunes_old_logs(tmp_path: Path, fake_venv: Path) -> None:
    done = run_wrapper(tmp_path, tmp_path / "missing-venv")
    assert done.returncode == 2 and "SPOTLAKE_VENV" in done.stderr

    logs = tmp_path / "logs"
    logs.mkdir()
    old, recent = logs / "collect-2020-01-01.log", logs / "collect-2020-01-02.log"
    for path, age_days in ((old, 30), (recent, 1)):
        path.write_text("x\n")
        stamp = time.time() - age_days * 86400
        os.utime(path, (stamp, stamp))
    done = run_wrapper(tmp_path, fake_venv, env={"SPOTLAKE_LOG_KEEP_DAYS": "14"})
    assert done.returncode == 0
    assert not old.exists() and recent.exists()


def test_wrapper_with_the_real_cli_treats_a_locked_store_as_a_skip(tmp_path: Path) -> None:
    """The real `spotlake` from this venv finds the store locked by another process: exit 75 -> 0."""
    store = tmp_path / "store"
    store.mkdir()
    with (store / ".spotlake.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running collection holds
        done = run_wrapper(
            tmp_path,
            Path(sys.prefix),
            "--store",
            str(store),
            env={  # dummy values: the lock is taken before anything talks to Azure
                "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000000",
                "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000001",
                "AZURE_CLIENT_SECRET": "not-a-secret",
                "AZURE_SUBSCRIPTION_IDS": "00000000-0000-0000-0000-000000000002",
            },
        )
    assert done.returncode == 0, done.stderr + log_text(tmp_path)
    assert done.stderr == ""
    log = log_text(tmp_path)
    assert "is locked by" in log and "skipped: another run holds the store's lock" in log
    assert "not-a-secret" not in log


# --- shell scripts -----------------------------------------------------------------------------


def test_examples_have_the_expected_scripts() -> None:
    names = {p.name for p in SHELL_SCRIPTS}
    assert names == {
        "spotlake-collect.sh",
        "build_and_push.sh",
        "deploy.sh",
        "destroy.sh",
        "delete_image.sh",
    }


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_is_strict_valid_and_documented(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert script.stat().st_mode & stat.S_IXUSR, f"{script.name} is not executable"
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    assert not re.search(r"\b\d{12}\b", text), f"{script.name} hard-codes an AWS account id"
    shown = subprocess.run(
        [str(script), "-h"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shown.returncode == 0 and shown.stdout.startswith("Usage: "), shown.stderr


def test_no_account_ids_or_secrets_in_the_examples() -> None:
    for path in [*TF_FILES, BATCH / "Dockerfile", CRON / "spotlake.crontab", EXAMPLES / "README.md"]:
        text = path.read_text()
        assert not re.search(r"(?<![\w-])\d{12}(?![\w-])", text), f"{path.name}: an account id?"
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"{path.name}: an access key?"


@pytest.fixture
def batch_copy(tmp_path: Path) -> Path:
    """examples/aws-batch copied into a fake repository, with stub terraform/aws/docker on PATH."""
    repo = tmp_path / "repo"
    shutil.copytree(BATCH, repo / "examples" / "aws-batch")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool, body in {
        "terraform": "",
        "docker": '[[ "$1" != login ]] || cat >/dev/null\n',
        "aws": (
            'name=""; prev=""\n'
            'for arg in "$@"; do [[ "$prev" != --repository-names ]] || name="$arg"; prev="$arg"; done\n'
            'case "$*" in\n'
            '  *"describe-repositories"*"--query"*) echo "example.dkr.ecr.us-west-2.amazonaws.com/$name";;\n'
            '  *"get-login-password"*) echo token;;\n'
            '  *"batch-delete-image"*) echo "${STUB_FAILURES:-}";;\n'
            "esac\n"
        ),
    }.items():
        path = bin_dir / tool
        path.write_text(f'#!/usr/bin/env bash\necho "{tool} $*" >> "{calls}"\n{body}')
        path.chmod(0o755)
    return repo


def run_script(repo: Path, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = repo.parent / "bin"
    return subprocess.run(
        [str(repo / "examples" / "aws-batch" / "scripts" / name), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(repo.parent), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def calls_of(repo: Path) -> list[str]:
    path = repo.parent / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_deploy_writes_the_inputs_and_runs_terraform(batch_copy: Path) -> None:
    done = run_script(
        batch_copy,
        "deploy.sh",
        "-i",
        "example.dkr.ecr.us-west-2.amazonaws.com/spotlake-collector:0.1.0",
        "-b",
        "my-spotlake-data",
        "-s",
        "subnet-0a1b, subnet-2c3d",
        "-g",
        "sg-0a1b",
        "-r",
        "eu-west-1",
        "-y",
        "--",
        "-var",
        "enable_timestream=false",
    )
    assert done.returncode == 0, done.stderr
    tf_dir = batch_copy / "examples" / "aws-batch" / "terraform"
    tfvars = json.loads((tf_dir / "deploy.auto.tfvars.json").read_text())
    assert tfvars == {
        "region": "eu-west-1",
        "image_uri": "example.dkr.ecr.us-west-2.amazonaws.com/spotlake-collector:0.1.0",
        "bucket_name": "my-spotlake-data",
        "store_prefix": "spotlake",
        "subnet_ids": ["subnet-0a1b", "subnet-2c3d"],
        "security_group_ids": ["sg-0a1b"],
    }
    declared = set(declared_variables())
    assert set(tfvars) <= declared
    assert calls_of(batch_copy) == [
        f"terraform -chdir={tf_dir} init -input=false",
        f"terraform -chdir={tf_dir} apply -input=false -auto-approve -var enable_timestream=false",
        f"terraform -chdir={tf_dir} output",
    ]

    # Later runs reuse the saved values; destroy -F first lets Terraform delete a non-empty bucket.
    assert run_script(batch_copy, "deploy.sh").returncode == 0
    done = run_script(batch_copy, "destroy.sh", "-F", "-y")
    assert done.returncode == 0, done.stderr
    assert calls_of(batch_copy)[-2:] == [
        f"terraform -chdir={tf_dir} apply -input=false -auto-approve -target=aws_s3_bucket.data"
        " -var force_destroy_bucket=true",
        f"terraform -chdir={tf_dir} destroy -input=false -auto-approve -var force_destroy_bucket=true",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "first deploy: -i, -b, -s and -g are required"),
        (("-r", "us-east-1"), "go together"),
        (("-i", "img", "-b", "Bad_Bucket", "-s", "subnet-0a", "-g", "sg-0a"), "not a valid bucket name"),
        (("-i", "img", "-b", "bucket", "-s", "subnet-0a,x;rm", "-g", "sg-0a"), "is not an id"),
        (("-i", 'img"', "-b", "bucket", "-s", "subnet-0a", "-g", "sg-0a"), "does not look like an image"),
        (("-i", "img", "-b", "bucket", "-s", "subnet-0a", "-g", "sg-0a", "-r", "mars"), "not an AWS region"),
        (("-z",), "unknown option -z"),
    ],
)
def test_deploy_rejects_bad_input_before_touching_anything(
    batch_copy: Path, args: tuple[str, ...], message: str
) -> None:
    done = run_script(batch_copy, "deploy.sh", *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert calls_of(batch_copy) == []
    assert not (batch_copy / "examples" / "aws-batch" / "terraform" / "deploy.auto.tfvars.json").exists()


def test_destroy_refuses_without_a_deployment(batch_copy: Path) -> None:
    done = run_script(batch_copy, "destroy.sh", "-y")
    assert done.returncode == 1 and "nothing deployed from here" in done.stderr
    assert calls_of(batch_copy) == []


def test_build_and_push_builds_from_the_repository_root_and_prints_the_image(batch_copy: Path) -> None:
    done = run_script(batch_copy, "build_and_push.sh", "-r", "us-west-2", "-t", "0.1.0")
    assert done.returncode == 0, done.stderr
    image = "example.dkr.ecr.us-west-2.amazonaws.com/spotlake-collector:0.1.0"
    assert done.stdout.strip() == image  # what deploy.sh -i "$(./build_and_push.sh)" consumes
    calls = calls_of(batch_copy)
    dockerfile = batch_copy / "examples" / "aws-batch" / "scripts" / ".." / "Dockerfile"
    assert f"docker build --platform linux/amd64 -f {dockerfile} -t {image} {batch_copy}" in calls
    assert calls[-1] == f"docker push {image}"
    assert all("--region us-west-2" in c for c in calls if c.startswith("aws "))
    assert run_script(batch_copy, "build_and_push.sh", "-t", "bad tag!").returncode == 1


def test_delete_image_reports_ecr_failures(batch_copy: Path) -> None:
    ok = run_script(batch_copy, "delete_image.sh", "-t", "0.1.0")
    assert ok.returncode == 0, ok.stderr
    assert "imageTag=0.1.0" in calls_of(batch_copy)[-1]
    failed = run_script(batch_copy, "delete_image.sh", "-t", "0.1.0", STUB_FAILURES="0.1.0 ImageNotFound x")
    assert failed.returncode == 1 and "ImageNotFound" in failed.stderr


# --- Terraform -----------------------------------------------------------------------------------


def strip_hcl(text: str, *, keep_strings: bool = False) -> str:
    """The text without comments; string literals (templates included) blanked unless ``keep_strings``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                if text.startswith("${", j):
                    depth, j = 1, j + 2
                    while depth:
                        depth += {"{": 1, "}": -1}.get(text[j], 0)
                        j += 1
                    continue
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1] if keep_strings else '""')
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tf_text() -> str:
    return "\n".join(p.read_text() for p in TF_FILES)


def declared_variables() -> dict[str, str]:
    """variable name -> its block text."""
    text = (TF / "variables.tf").read_text()
    blocks = re.split(r'^variable "', text, flags=re.M)[1:]
    return {b.split('"', 1)[0]: b for b in blocks}


def variable_default(name: str) -> str:
    match = re.search(r'^\s*default\s*=\s*("?)([^"\n]*)\1\s*$', declared_variables()[name], re.M)
    assert match, f"variable {name} has no simple default"
    return match.group(2)


def test_terraform_layout_is_the_seeds() -> None:
    assert {p.name for p in TF_FILES} == {"main.tf", "variables.tf", "events.tf", "outputs.tf"}


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_terraform_parses_as_hcl2(path: Path) -> None:
    """A real HCL2 parser (python-hcl2), not a bracket count: any syntax error fails here."""
    parsed = hcl2.loads(path.read_text())
    assert parsed, path.name


def test_the_hcl2_parse_rejects_broken_terraform() -> None:
    text = (TF / "main.tf").read_text()
    for broken in (
        text.replace("resource ", "resource = ", 1),  # not a block
        text.replace("  bucket = var.bucket_name\n", '  bucket = "var.bucket_name\n', 1),  # open string
        text[: text.rindex("}")],  # unclosed block
    ):
        assert broken != text
        with pytest.raises(Exception):  # noqa: B017 - lark raises several kinds of parse errors
            hcl2.loads(broken)


#: ``#checkov:skip=CKV_...: reason`` with a reason of a few words at least.
CHECKOV_SKIP = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(.*)$", re.M)


def checkov_skips() -> list[tuple[str, str, str]]:
    """(file, check id, reason) for every inline checkov skip in the Terraform."""
    return [(p.name, m[1], m[2]) for p in TF_FILES for m in CHECKOV_SKIP.finditer(p.read_text())]


def test_every_checkov_skip_is_justified() -> None:
    skips = checkov_skips()
    assert skips, "no skips: then drop this test"
    for where, check, reason in skips:
        words = re.findall(r"[A-Za-z]+", reason)
        assert reason.startswith(":") and len(words) >= 8, f"{where}: {check} needs a reason"
    # Only findings that are decisions about this example are skipped, never a check that would
    # catch a weakened bucket, role or instance (those must pass: see the checkov test below).
    assert {check for _, check, _ in skips} <= {
        "CKV_AWS_18",
        "CKV_AWS_21",
        "CKV_AWS_119",
        "CKV_AWS_144",
        "CKV_AWS_145",
        "CKV_AWS_158",
        "CKV_AWS_160",
        "CKV_AWS_297",
        "CKV2_AWS_62",
    }
    # Nothing is skipped globally or by a file-level switch.
    assert not re.search(r"checkov:skip=(?!CKV)", tf_text())


CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def run_checkov(directory: Path) -> dict[str, set[str]]:
    """check id -> failed resources, from checkov's JSON report on ``directory`` (offline)."""
    command = [str(CHECKOV), "--directory", str(directory), "--framework", "terraform"]
    command += ["--output", "json", "--skip-download", "--compact", "--quiet"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    failed: dict[str, set[str]] = {}
    for result in report.get("results", {}).get("failed_checks", []) if isinstance(report, dict) else []:
        failed.setdefault(result["check_id"], set()).add(result["resource"])
    assert (done.returncode == 1) == bool(failed), done.stdout[-2000:]
    return failed


def test_checkov_catches_a_weakened_copy(tmp_path: Path) -> None:
    """`make checkov` passes on the real files; this proves the same run fails on a weaker copy, and
    that the inline skips do not hide what they should not (IMDSv1, public access, retention)."""
    if not CHECKOV.exists():
        # `make test` installs it before pytest runs; in CI its absence is an error.
        assert not os.environ.get("CI"), f"{CHECKOV} missing: `make test` runs `make checkov` first"
        pytest.skip("checkov is installed by `make checkov` (.venv-checkov)")
    for path in TF_FILES:
        shutil.copy(path, tmp_path / path.name)
    main = tmp_path / "main.tf"
    text = main.read_text()
    for old, new in (
        ('http_tokens                 = "required"', 'http_tokens                 = "optional"'),
        ("restrict_public_buckets = true", "restrict_public_buckets = false"),
        ("abort_incomplete_multipart_upload {", "noncurrent_version_expiration {"),
    ):
        assert old in text
        text = text.replace(old, new)
    main.write_text(text)
    variables = tmp_path / "variables.tf"
    variables.write_text(variables.read_text().replace("default     = 365", "default     = 30"))
    failed = run_checkov(tmp_path)
    # IMDSv1 allowed, public access not fully blocked, no abort of failed uploads, short retention.
    assert set(failed) == {"CKV_AWS_79", "CKV_AWS_56", "CKV_AWS_300", "CKV_AWS_338"}, failed
    assert failed["CKV_AWS_338"] == {"aws_cloudwatch_log_group.runs", "aws_cloudwatch_log_group.job"}


def test_every_variable_is_declared_and_used() -> None:
    used = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", strip_hcl(tf_text(), keep_strings=True)))
    declared = set(declared_variables())
    assert used - declared == set(), "used but not declared in variables.tf"
    assert declared - used == set(), "declared but never used"
    assert used >= {"image_uri", "bucket_name", "subnet_ids", "security_group_ids"}


def test_locals_used_are_defined() -> None:
    main = (TF / "main.tf").read_text()
    locals_start = re.search(r"^locals\s*\{", main, re.M)
    assert locals_start
    block = hcl_block(main, locals_start.start())
    defined = set(re.findall(r"^  ([A-Za-z_]\w*)\s*=", block, re.M))  # top level of the block
    used = set(re.findall(r"\blocal\.([A-Za-z_]\w*)", strip_hcl(tf_text(), keep_strings=True)))
    assert used <= defined, used - defined
    assert defined <= used, defined - used


def test_variables_mirroring_cli_options_default_to_the_cli_defaults() -> None:
    collect = _subparsers(_subparsers(build_parser())["collect"])["azure"]
    cli_defaults = {a.dest: a.default for a in collect._actions}
    for variable, dest in {
        "auth_table_name": "dynamodb_table",
        "timestream_database": "timestream_database",
        "timestream_table": "timestream_table",
        "timestream_layout": "timestream_layout",
        "log_group_name": "log_group",
        "metrics_namespace": "metrics_namespace",
    }.items():
        assert variable_default(variable) == cli_defaults[dest], variable


def test_resource_names_in_iam_match_what_the_code_uses() -> None:
    """The IAM grants name the item, parameter and log stream the library really reads/writes."""
    import attrs

    from spotlake.collect import auth
    from spotlake.storage.cloudwatch import CloudWatchSink

    main = (TF / "main.tf").read_text()

    def local_string(name: str) -> str:
        match = re.search(rf'^  {name}\s*=\s*"([^"]*)"', main, re.M)
        assert match, f"local.{name} must be a plain string in main.tf"
        return match.group(1)

    assert local_string("slack_parameter_name") == auth.SLACK_WEBHOOK_PARAMETER
    assert local_string("metrics_log_stream") == attrs.fields(CloudWatchSink).log_stream.default
    assert (
        f'auth_item_key  = var.regional ? "{auth.DYNAMODB_KEY_REGIONAL}" : "{auth.DYNAMODB_KEY_ZONAL}"'
    ) in main
    assert 'hash_key     = "id"' in main  # from_dynamodb's default key attribute
    assert variable_default("auth_table_name") == auth.DEFAULT_AUTH_TABLE


def hcl_block(text: str, start: int) -> str:
    """The balanced `{...}` block whose `{` is at or after ``start``."""
    i = text.index("{", start)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i : j + 1]
    raise AssertionError("unbalanced block")


def hcl_list(block: str, name: str) -> list[str]:
    match = re.search(rf"^\s*{name}\s*=\s*\[(.*?)\]", block, re.S | re.M)
    assert match, f"no {name} in {block[:80]}"
    inner = match.group(1)
    strings = re.findall(r'"([^"]*)"', inner)
    references = re.findall(r"(?<![\w.])((?:local|var|aws_\w+)\.[\w.]+)", re.sub(r'"[^"]*"', '""', inner))
    return strings + references


def iam_statements() -> list[tuple[str, str]]:
    """(file, statement block) for every statement of every aws_iam_policy_document."""
    out = []
    for path in TF_FILES:
        text = path.read_text()
        for doc in re.finditer(r'data "aws_iam_policy_document" "\w+"', text):
            body = hcl_block(text, doc.end())
            for st in re.finditer(r"\b(?:statement|content)\s*\{", body):
                block = hcl_block(body, st.start())
                if re.search(r"^\s*actions\s*=", block, re.M):
                    out.append((path.name, block))
    return out


def test_iam_actions_are_from_the_allow_list_without_wildcards() -> None:
    statements = iam_statements()
    assert len(statements) >= 12, len(statements)
    granted = set()
    for where, block in statements:
        assert "not_actions" not in block and "not_resources" not in block and "Deny" not in block, where
        actions = hcl_list(block, "actions")
        assert actions, where
        for action in actions:
            assert "*" not in action, f"{where}: wildcard action {action}"
            assert action in ALLOWED_ACTIONS, f"{where}: {action} is not an action the job needs"
        granted.update(actions)
        if "principals" in block:  # a trust policy
            assert actions == ["sts:AssumeRole"]
            continue
        resources = hcl_list(block, "resources")
        if "*" in resources:
            assert resources == ["*"] and set(actions) <= RESOURCELESS_ACTIONS, f"{where}: {actions} on *"
        if "cloudwatch:PutMetricData" in actions:
            assert '"cloudwatch:namespace"' in block, "metrics must be scoped to the namespace"
        if "dynamodb:GetItem" in actions:
            assert '"dynamodb:LeadingKeys"' in block and "local.auth_item_key" in block
        if "s3:GetObject" in actions:
            assert resources == ["${aws_s3_bucket.data.arn}/${local.store_prefix}/*"]
    assert granted == ALLOWED_ACTIONS  # and nothing on the list is dead weight
    # No inline JSON policies that would escape the checks above.
    assert not re.search(r'"Action"|Action\s*=', tf_text())


def test_only_the_ecs_instance_managed_policy_is_attached() -> None:
    arns = re.findall(r'policy_arn\s*=\s*"([^"]+)"', tf_text())
    assert arns == ["arn:${local.partition}:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"]


def test_batch_runs_on_spot_with_price_capacity_optimized_every_10_minutes() -> None:
    main = (TF / "main.tf").read_text()
    resource = re.search(r'resource "aws_batch_compute_environment" "\w+"', main)
    assert resource
    compute = hcl_block(main, resource.end())
    assert re.search(r'^\s*type\s*=\s*"SPOT"', compute, re.M)
    assert re.search(r'allocation_strategy\s*=\s*"SPOT_PRICE_CAPACITY_OPTIMIZED"', compute)
    assert variable_default("schedule_expression") == "cron(0/10 * * * ? *)"
    events = (TF / "events.tf").read_text()
    assert "aws-sdk:batch:submitJob" in events and "var.schedule_expression" in events


def job_command_lists() -> list[tuple[str | None, list[str]]]:
    """(condition variable, arguments) for each list inside `collect_command = concat(...)` in main.tf,
    references replaced by sample values; the base list has no condition."""
    main = (TF / "main.tf").read_text()
    start = re.search(r"collect_command\s*=\s*concat\(", main)
    assert start, "main.tf must build the job command in local.collect_command"
    depth, i = 1, start.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(main[i], 0)
        i += 1
    body = "\n".join(line.split("#", 1)[0] for line in main[start.end() : i - 1].splitlines())
    samples = {"local.store_url": "s3://my-spotlake-data/spotlake"}
    lists: list[tuple[str | None, list[str]]] = []
    for condition, raw in re.findall(r"(?:var\.(\w+)\s*\?\s*)?\[(.*?)\]\s*(?::\s*\[\s*\])?", body, re.S):
        tokens = re.findall(r'"[^"]*"|tostring\(var\.\w+\)|(?:var|local)\.\w+', raw)
        argv = []
        for token in tokens:
            if token.startswith('"'):
                argv.append(re.sub(r"\$\{[^}]*\}", "x", token[1:-1]))
            elif "var." in token:
                argv.append(variable_default(token.split("var.", 1)[1].rstrip(")")))
            else:
                argv.append(samples[token])
        lists.append((condition or None, argv))
    return lists


def job_command_variants() -> list[list[str]]:
    """Every combination of the base list and the optional lists, base alone first, all last."""
    (no_condition, base), *optional = job_command_lists()
    assert no_condition is None and all(condition for condition, _ in optional)
    return [
        base + [arg for _, part in chosen for arg in part]
        for size in range(len(optional) + 1)
        for chosen in itertools.combinations(optional, size)
    ]


def default_job_command() -> list[str]:
    """The job's command with the variables' defaults (what a plain deploy.sh runs)."""
    (_, base), *optional = job_command_lists()
    return base + [
        arg for condition, part in optional if variable_default(str(condition)) == "true" for arg in part
    ]


def test_job_definition_command_parses_in_every_combination() -> None:
    lists = job_command_lists()
    conditions = [condition for condition, _ in lists]
    assert conditions == [None, "regional", "enable_timestream", "enable_slack"]
    entrypoint = dockerfile_entrypoint()
    assert entrypoint == ["spotlake"]
    for argv in job_command_variants():
        args = check_cli(argv, "terraform/main.tf local.collect_command")
        assert args.store.startswith("s3://") and args.credentials == "dynamodb"
        assert args.cloudwatch and args.quiet
    full = check_cli(job_command_variants()[-1], "main.tf")
    assert full.timestream and full.slack and full.regional
    assert full.log_group == variable_default("log_group_name")
    assert full.lock_timeout == float(variable_default("lock_timeout_seconds"))
    assert "command    = local.collect_command" in (TF / "main.tf").read_text()


def test_outputs_commands_parse() -> None:
    found = list(commands_in_text(re.sub(r"\$\{[^}]*\}", "x", (TF / "outputs.tf").read_text())))
    assert found, "outputs.tf should print a spotlake status command"
    for argv in found:
        check_cli(argv, "terraform/outputs.tf")


def test_terraform_fmt_when_available(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    for path in TF_FILES:
        shutil.copy(path, tmp_path / path.name)
    done = subprocess.run(
        [terraform, "fmt", "-check", "-diff", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "TF_CLI_CONFIG_FILE": os.devnull},
    )
    assert done.returncode == 0, done.stdout + done.stderr  # fmt also fails on HCL syntax errors


# --- Dockerfile --------------------------------------------------------------------------------


def dockerfile_entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", (BATCH / "Dockerfile").read_text(), re.M)
    assert match, "the Dockerfile needs an exec-form ENTRYPOINT"
    value: list[str] = json.loads(match.group(1))
    return value


def test_dockerfile_installs_this_repository_and_runs_the_console_script() -> None:
    text = (BATCH / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"spotlake": "spotlake.cli:main"}
    assert dockerfile_entrypoint() == ["spotlake"]
    assert re.search(r"pip install \.(\s|$)", text)
    assert "apt-get" not in text and "ARG AWS" not in text and "--build-arg" not in text
    # Every stage starts from the same base image, pinned by digest (a tag alone can move).
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(bases) == 2 and len(set(bases)) == 1, bases
    python = re.fullmatch(r"python:3\.(\d+)-slim@sha256:[0-9a-f]{64}", bases[0])
    assert python, f"base image not pinned by digest: {bases[0]}"
    assert int(python[1]) >= 11
    assert re.search(r"^USER (?!root|0$)\S+", text, re.M), "the image should not run as root"
    # Every COPY source exists and is let through the build context's ignore file.
    ignore = (BATCH / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else is excluded (.venv, data, .git)
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
            assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, source


@pytest.mark.parametrize("doc", ["README.md", "docs/operations.md", "docs/planner.md", "docs/allocator.md"])
def test_project_docs_commands_parse(doc: str) -> None:
    """The top-level README and the docs show only command lines the CLI accepts."""
    found = list(commands_in_text((EXAMPLES.parent / doc).read_text()))
    assert found, f"{doc} shows no spotlake command (update this test if that is intended)"
    for argv in found:
        if "..." in argv or any(a.startswith(("(", "[")) for a in argv):
            continue  # a synopsis line ("plan (--catalog CSV | ...)"), not a runnable command
        check_cli(argv, doc)
