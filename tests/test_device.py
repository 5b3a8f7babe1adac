"""Choosing the CPU thread count and the training precision."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_fast_takes_bfloat16_on_a_cpu_with_amx_and_auto_does_not(monkeypatch):
    import gptlab.device as device_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: True)
    assert device_module.resolve_dtype("fast", cpu) == torch.bfloat16
    assert device_module.resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(device_module, "cpu_has_amx", lambda: False)
    assert device_module.resolve_dtype("fast", cpu) == torch.float32


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc settings")
def test_freed_memory_stays_in_the_process_instead_of_faulting_back_in():
    """Twenty 1 MB tensors made and freed, five times: by default glibc most often hands the freed
    heap back to the OS and faults ~24,000 pages in again (how often depends on what else sits on
    the heap); kept, the pages are reused. Run in a process of its own: the setting is global."""
    script = textwrap.dedent(
        """
        import resource, torch
        from gptlab.device import keep_freed_memory

        def faults_of_churn():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                tensors = [torch.empty(250_000).fill_(1.0) for _ in range(20)]
                del tensors
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        assert keep_freed_memory()
        faults_of_churn()
        print(faults_of_churn())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 500
