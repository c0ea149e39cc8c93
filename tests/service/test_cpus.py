"""CPU counting: the affinity mask capped by cgroup v2 and v1 CPU quotas, from fake cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import cpus, settings
from service.cpus import available_cpus, quota_cpus
from service.settings import MAX_AUTO_WORKERS, Settings

V2_SELF = "0::/\n"
V1_SELF = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 8)


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("200000 100000\n", 2), ("150000 100000\n", 1), ("50000 100000\n", 1), ("max 100000\n", 8)],
)
def test_v2_quota_caps_the_affinity(tmp_path: Path, cpu_max: str, expected: int) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", cpu_max)
    proc = write(tmp_path / "proc-cgroup", V2_SELF)
    assert available_cpus(root, proc) == expected


@pytest.mark.usefixtures("eight_cpus")
def test_v2_the_tightest_limit_on_the_way_up_wins(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "system.slice/cpu.max", "300000 100000\n")
    write(root / "system.slice/app.service/cpu.max", "max 100000\n")
    proc = write(tmp_path / "proc-cgroup", "0::/system.slice/app.service\n")
    assert quota_cpus(root, proc) == 3.0
    assert available_cpus(root, proc) == 3


@pytest.mark.usefixtures("eight_cpus")
def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "400000\n")
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    proc = write(tmp_path / "proc-cgroup", V1_SELF)
    assert available_cpus(root, proc) == 4


@pytest.mark.usefixtures("eight_cpus")
def test_v1_inside_the_container_namespace(tmp_path: Path) -> None:
    """The container sees its own cgroup as the mount's root, not the host path it names."""
    root = tmp_path / "cgroup"
    write(root / "cpu/cpu.cfs_quota_us", "200000\n")
    write(root / "cpu/cpu.cfs_period_us", "100000\n")
    proc = write(tmp_path / "proc-cgroup", V1_SELF)
    assert available_cpus(root, proc) == 2


@pytest.mark.usefixtures("eight_cpus")
@pytest.mark.parametrize(
    ("quota", "period"), [("-1", "100000"), ("garbage", "100000"), ("100000", "0")]
)
def test_v1_no_or_unreadable_quota_leaves_the_affinity(
    tmp_path: Path, quota: str, period: str
) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu/cpu.cfs_quota_us", quota)
    write(root / "cpu/cpu.cfs_period_us", period)
    proc = write(tmp_path / "proc-cgroup", V1_SELF)
    assert quota_cpus(root, proc) is None
    assert available_cpus(root, proc) == 8


def test_no_cgroup_files_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 3)
    assert available_cpus(tmp_path / "none", tmp_path / "missing") == 3


def test_the_quota_never_raises_above_the_affinity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 2)
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "1600000 100000\n")
    assert available_cpus(root, write(tmp_path / "proc", V2_SELF)) == 2


def test_this_machine_has_at_least_one() -> None:
    assert 1 <= available_cpus() <= cpus.affinity_cpus()


@pytest.mark.parametrize(("found", "workers", "threads"), [(2, 2, 1), (1, 1, 1), (64, 8, 8)])
@pytest.mark.parametrize("asked", [0, "auto", "AUTO"])
def test_auto_workers_follow_the_cpus(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    found: int,
    workers: int,
    threads: int,
    asked: object,
) -> None:
    monkeypatch.setattr(settings, "available_cpus", lambda: found)
    s = Settings(models_dir=tmp_path, workers=asked)  # type: ignore[arg-type]
    assert (s.workers, s.cpu_threads) == (workers, threads)
    assert s.workers <= MAX_AUTO_WORKERS
    assert s.to_env()["DEEPSVDD_WORKERS"] == str(workers)


def test_an_explicit_worker_count_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "available_cpus", lambda: 2)
    s = Settings(models_dir=tmp_path, workers=3)
    assert (s.workers, s.cpu_threads) == (3, 1)
    monkeypatch.setenv("DEEPSVDD_WORKERS", "auto")
    assert Settings(models_dir=tmp_path).workers == 2
