"""Choosing the CPU thread count and the training precision."""

from __future__ import annotations

import pytest
import torch

from gptlab.device import SMALL_MODEL_PARAMS, cpu_threads


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_requested_thread_count_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(2, num_params=1000) == 2


def test_a_small_model_trains_on_one_thread(monkeypatch, restore_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert cpu_threads(0, num_params=SMALL_MODEL_PARAMS - 1) == 1
    assert cpu_threads(0, num_params=SMALL_MODEL_PARAMS) == 2  # torch's own count


def test_omp_num_threads_is_respected_when_set(monkeypatch, restore_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)  # what torch read from the variable at start-up
    assert cpu_threads(0, num_params=1000) == 2


def test_auto_trains_in_bfloat16_on_a_cpu_with_amx_and_infers_in_float32(monkeypatch):
    import gptlab.device as device_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    assert device_module.resolve_dtype("auto", cpu, training=True) == torch.bfloat16
    assert device_module.resolve_dtype("auto", cpu) == torch.float32
    assert device_module.resolve_dtype("float32", cpu, training=True) == torch.float32
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    assert device_module.resolve_dtype("auto", cpu, training=True) == torch.float32
