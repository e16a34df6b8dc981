"""How GPUs are shared out, checked without a GPU: xdist workers to devices, `-n auto`, the auto batch size.

torch's CUDA queries (device count, free memory) are given fixed answers here; nothing is loaded or run,
so these pin the arithmetic. Running on real GPUs is benchmarks/gpu_throughput.py's job.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from harness.generation.generate import GenerationRequest
from harness.pytest_plugin.hooks import pytest_xdist_auto_num_workers
from harness.pytest_plugin.options import _worker_device
from harness.pytest_plugin.scored_images import auto_batch_size

GIB = 2**30


def worker(workerid: str) -> SimpleNamespace:
    return SimpleNamespace(workerinput={"workerid": workerid})


@pytest.mark.parametrize(
    ("gpus", "workers", "devices"),
    [
        (2, ["gw0", "gw1", "gw2", "gw3"], ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),
        (8, ["gw0", "gw3", "gw7"], ["cuda:0", "cuda:3", "cuda:7"]),
        (1, ["gw0", "gw1"], ["cuda", "cuda"]),
    ],
)
def test_each_xdist_worker_takes_its_own_gpu(
    monkeypatch: pytest.MonkeyPatch, gpus: int, workers: list[str], devices: list[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert [_worker_device(worker(w), "cuda") for w in workers] == devices  # type: ignore[arg-type]


def test_a_chosen_device_or_no_xdist_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert _worker_device(worker("gw2"), "cuda:1") == "cuda:1"  # type: ignore[arg-type]
    assert _worker_device(worker("gw2"), "cpu") == "cpu"  # type: ignore[arg-type]
    assert _worker_device(SimpleNamespace(), "cuda") == "cuda"  # type: ignore[arg-type]


@pytest.mark.parametrize(("device_option", "gpus", "workers"), [("auto", 4, 4), ("cuda", 8, 8), ("cpu", 4, None)])
def test_n_auto_starts_one_worker_per_gpu(
    monkeypatch: pytest.MonkeyPatch, device_option: str, gpus: int, workers: int | None
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    config = SimpleNamespace(getoption=lambda name: device_option, getini=lambda name: "auto")
    assert pytest_xdist_auto_num_workers(config) == workers  # type: ignore[arg-type]


def test_n_auto_without_gpus_leaves_the_count_to_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    config = SimpleNamespace(getoption=lambda name: None, getini=lambda name: "auto")
    assert pytest_xdist_auto_num_workers(config) is None  # type: ignore[arg-type]


def request(size: int | None = None) -> GenerationRequest:
    return GenerationRequest("an owl", None, 0, 25, 7.5, size, size)


@pytest.mark.parametrize(
    ("free_gib", "dtype", "size", "batch"),
    [
        (10, torch.float16, None, 7),  # 70% of 10 GiB at about 1 GiB per 512x512 image
        (10, torch.float32, 512, 3),  # fp32 needs twice the memory
        (10, torch.float16, 1024, 1),  # four times the pixels
        (0.5, torch.float16, 512, 1),  # never less than one
        (139, torch.float16, 512, 32),  # never more than 32
    ],
)
def test_auto_batch_size_follows_free_gpu_memory(
    monkeypatch: pytest.MonkeyPatch, free_gib: float, dtype: torch.dtype, size: int | None, batch: int
) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (int(free_gib * GIB), 140 * GIB))
    pipeline = SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype)
    assert auto_batch_size(pipeline, request(size)) == batch


def test_auto_batch_size_off_cuda_is_a_small_fixed_batch() -> None:
    assert auto_batch_size(SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32), request()) == 4
