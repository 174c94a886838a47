"""Dispatch: which backend assign uses, and SDA_KERNELS."""

import os
import subprocess
import sys

import pytest
import torch

from sda.kernels import assign, backend, dispatch

X, C = torch.randn(200, 16), torch.randn(32, 16)


def spy(monkeypatch):
    """Record which backend functions assign calls."""
    calls = []
    for module, name in ((dispatch, "assign_reference"), (dispatch._triton, "assign_triton")):
        real = getattr(module, name)
        def recording(*a, _real=real, _name=name, **kw):
            calls.append(_name)
            return _real(*a, **kw)
        monkeypatch.setattr(module, name, recording)
    return calls


def test_auto_uses_the_reference_on_cpu(monkeypatch):
    monkeypatch.delenv("SDA_KERNELS", raising=False)
    calls = spy(monkeypatch)
    assert backend(X) == "torch"
    assign(X, C)
    assert calls == ["assign_reference"]


def test_forcing_triton_on_cpu_runs_the_kernel_under_the_interpreter(monkeypatch):
    monkeypatch.setenv("SDA_KERNELS", "triton")
    calls = spy(monkeypatch)
    assert backend(X) == "triton"
    got = assign(X, C)
    assert calls == ["assign_triton"]
    monkeypatch.setenv("SDA_KERNELS", "torch")
    assert backend(X) == "torch"
    assert torch.equal(got.indices, assign(X, C).indices)
    assert calls == ["assign_triton", "assign_reference"]


@pytest.mark.parametrize("value", [" Torch ", "TORCH", ""])
def test_the_setting_is_forgiving_about_case_and_space(monkeypatch, value):
    monkeypatch.setenv("SDA_KERNELS", value)
    assert backend(X) == "torch"


def test_unknown_setting_is_named(monkeypatch):
    monkeypatch.setenv("SDA_KERNELS", "cuda")
    with pytest.raises(ValueError, match=r"SDA_KERNELS='cuda' is not one of auto, torch, triton"):
        assign(X, C)


def test_without_triton_everything_goes_to_the_reference(monkeypatch):
    monkeypatch.setattr(dispatch, "_triton", None)
    monkeypatch.delenv("SDA_KERNELS", raising=False)
    assert backend(X) == "torch"
    monkeypatch.setenv("SDA_KERNELS", "triton")
    with pytest.raises(ValueError, match="triton is not importable"):
        backend(X)


def test_forcing_triton_on_cpu_without_the_interpreter_is_refused():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["SDA_KERNELS"] = "triton"
    code = (
        "import torch\nfrom sda.kernels import assign\n"
        "try:\n    assign(torch.randn(4, 8), torch.randn(2, 8))\n"
        "except ValueError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs CUDA" in out.stdout and "TRITON_INTERPRET=1" in out.stdout
