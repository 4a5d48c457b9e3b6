"""The CLI gives PYTORCH_NVML_BASED_CUDA_CHECK back its own value (Lightning's import sets it to 1)
on a machine without a CUDA device, and CUDA detection answers as in a plain torch process."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

cli_main = importlib.import_module("visrep.cli.main")  # the package's `main` is the function

VAR = "PYTORCH_NVML_BASED_CUDA_CHECK"

# torch's own answer first (the variable as the user left it), then the CLI's import
_CLI = f"""import json, os, sys, torch
plain = torch.cuda.is_available()
import visrep.cli
print(json.dumps(["lightning.fabric" in sys.modules, os.environ.get({VAR!r}),
                  torch.cuda.device_count(), torch.cuda.is_available(), plain]))"""


def test_cli_import_keeps_the_variable_unset_without_a_cuda_device() -> None:
    env = {k: v for k, v in os.environ.items() if k != VAR} | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _CLI], env=env, capture_output=True, text=True,
                         timeout=300, check=True)  # fmt: skip
    lightning_imported, value, devices, available, plain = json.loads(out.stdout.splitlines()[-1])
    assert lightning_imported  # Lightning's import set it to 1 on the way
    assert value == (None if devices == 0 else "1")  # a CUDA device keeps Lightning's value
    assert available == (devices > 0) == plain  # CUDA detection answers as plain torch does


@pytest.mark.parametrize(("user", "devices", "expected"),
                         [(None, 0, None), ("0", 0, "0"), ("1", 0, "1"), (None, 1, "1")])  # fmt: skip
def test_restore_nvml_check(
    monkeypatch: pytest.MonkeyPatch, user: str | None, devices: int, expected: str | None
) -> None:
    monkeypatch.setenv(VAR, "1")  # as Lightning's import leaves it
    monkeypatch.setattr(torch.cuda, "device_count", lambda: devices)
    cli_main._restore_nvml_check(user)
    assert os.environ.get(VAR) == expected
