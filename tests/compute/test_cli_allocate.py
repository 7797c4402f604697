"""``spotlake allocate``: the ranked decision with reasons, on a store and on catalogs; exit 2 when
the request cannot be served."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest
from ec2_support import AMI

from pipeline_support import emulator, in_process_access, run_time
from spotlake.cli import EXIT_OK, EXIT_USAGE, main
from spotlake.clock import FakeClock
from spotlake.pipeline import RunStatus, run_cycle
from spotlake.storage import open_store

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXCERPT = str(FIXTURES / "aws_catalog_excerpt.csv")
SHARED_CATALOG = Path(__file__).resolve().parents[3] / "shared" / "data" / "aws_vms_catalog_us.csv"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding one committed collection run of the pipeline tests' emulator world."""
    emu = emulator()
    path = str(tmp_path_factory.mktemp("allocate") / "data")
    cast(FakeClock, emu.clock).set(run_time(0))
    report = run_cycle(run_time(0), store=open_store(path), azure=in_process_access(emu), clock=emu.clock)
    assert report.status is RunStatus.COMMITTED, report.error
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["allocate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_on_the_catalog_excerpt_a_ranked_plan_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--offers", EXCERPT, "--count", "10", "--type", "m5.large")
    assert code == EXIT_OK
    assert "split:   7 spot + 3 on-demand instances" in out
    plan = out.split("plan (", 1)[1].split("spot candidates:", 1)[0]
    assert "spot         7 x m5.large" in plan and "on-demand    3 x m5.large" in plan
    assert "rank 1 by PriceCapacity(risk=0.5), 7 planned" in out
    assert "does not fit the request" in out  # the p3 and mac1 rows, dropped with their reason
    assert "no observation time (a static catalog)" in out


def test_json_is_the_typed_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--offers", EXCERPT, "--vcpus", "8", "--preset", "balanced", "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["policy"] == "balanced" and report["unit"] == "vcpus" and report["problem"] is None
    assert sum(s["units"] for s in report["plan"]) >= 8
    first = report["spot"][0]
    assert first["rank"] == 1 and first["reason"].startswith("rank 1 by PriceCapacity(risk=1)")
    assert report["dropped"] == {}


def test_critical_task_class_plans_no_spot(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--offers", EXCERPT, "--count", "2", "--task-class", "critical", "--json")
    assert code == EXIT_OK
    assert {s["role"] for s in json.loads(out)["plan"]} == {"on-demand"}


def test_on_a_collected_store(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    at = (run_time(0) + timedelta(minutes=5)).isoformat()
    code, out, _ = run(capsys, "--store", store_dir, "--vcpus", "16", "--at", at)
    assert code == EXIT_OK, out
    assert "merged snapshot of" in out and "azure:" in out
    assert "spot candidates:" in out and "/3 " in out  # Azure placement scores on their 1..3 scale
    code, out, _ = run(capsys, "--store", store_dir, "--vcpus", "16", "--at", at, "--json")
    report = json.loads(out)
    assert report["plan"] and all(s["pool"].startswith("azure:") for s in report["plan"])


def test_stale_store_data_is_not_used_silently(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    later = (run_time(0) + timedelta(hours=3)).isoformat()
    code, out, _ = run(capsys, "--store", store_dir, "--vcpus", "16", "--at", later)
    assert code == EXIT_USAGE
    assert "cannot serve the request" in out and "data older than 1:00:00" in out
    code, _, _ = run(capsys, "--store", store_dir, "--vcpus", "16", "--at", later, "--max-age", "240")
    assert code == EXIT_OK


def test_on_the_shared_aws_catalog_or_its_excerpt(capsys: pytest.CaptureFixture[str]) -> None:
    """The shared catalog where it is beside the clone, else the committed excerpt of it."""
    full = SHARED_CATALOG.exists()
    catalog = str(SHARED_CATALOG) if full else EXCERPT
    code, out, _ = run(capsys, "--offers", catalog, "--vcpus", "64", "--min-vcpus", "8", "--json")
    assert code == EXIT_OK
    report = json.loads(out)
    assert report["offers"] == (6677 + 1950 if full else 16 + 4)
    assert sum(s["units"] for s in report["plan"]) >= 64
    too_small = report["dropped"]["does not fit the request (at least 8 vCPUs, 0 GiB, 0 GPUs)"]
    assert too_small > (1000 if full else 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--count", "1", "--min-vcpus", "1000"],
            "cannot serve the request: no offer is left: 9 does not fit the request",
        ),
        (["--count", "1", "--max-price", "0.001"], "above the maximum price 0.001 $/h"),
        (["--count", "1", "--preset", "cheapest"], "unknown preset 'cheapest'; use one of cost_optimized"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, "--offers", EXCERPT, "--region", "us-west-2", "--type", "m5.large", *args)
    assert code == EXIT_USAGE
    assert message in out + err


def test_launch_needs_aws_offers_and_an_image(capsys: pytest.CaptureFixture[str], store_dir: str) -> None:
    code, _, err = run(capsys, "--store", store_dir, "--count", "1", "--launch")
    assert code == EXIT_USAGE and "holds no AWS offers" in err
    code, _, err = run(capsys, "--offers", EXCERPT, "--count", "1", "--launch")
    assert code == EXIT_USAGE and "--image-id" in err


def test_launch_on_ec2_prints_what_was_launched(capsys: pytest.CaptureFixture[str], ec2_mock: None) -> None:
    import boto3

    code, out, err = run(
        capsys,
        *("--offers", EXCERPT, "--count", "3", "--type", "m5.large", "--region", "us-east-1"),
        *("--launch", "--image-id", AMI, "--json"),
    )
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert report["complete"] and len(report["instances"]) == 3
    assert {i["capacity_type"] for i in report["instances"]} == {"spot", "on-demand"}
    ids = [i["id"] for i in report["instances"]]
    ec2 = boto3.client("ec2", region_name="us-east-1")
    live = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
    assert len(live) == 3 and all(i["ImageId"] == AMI for i in live)
    assert sum(i.get("InstanceLifecycle") == "spot" for i in live) == 2


def test_launch_of_a_request_that_cannot_be_served_launches_nothing(
    capsys: pytest.CaptureFixture[str], ec2_mock: None
) -> None:
    import boto3

    code, out, _ = run(
        capsys,
        *("--offers", EXCERPT, "--count", "3", "--type", "m5.large", "--max-price", "0.001"),
        *("--launch", "--image-id", AMI),
    )
    assert code == EXIT_USAGE and "cannot serve the request" in out
    ec2 = boto3.client("ec2", region_name="us-east-1")
    assert ec2.describe_instances()["Reservations"] == []
