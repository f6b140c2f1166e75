"""The supported vLLM range: releases inside it pass, others are refused naming the range."""

from __future__ import annotations

import pytest
from packaging.version import Version

from llm_tts.backends.vllm_compat import (
    SUPPORTED_VLLM,
    check_vllm_version,
    default_enforce_eager,
    installed_vllm_version,
)
from llm_tts.errors import BackendUnavailableError


@pytest.mark.parametrize("version", ["0.20.0", "0.20.2", "0.20.2+cu130", "0.32.0+cpu", "0.32.1", "0.25.0rc1"])
def test_releases_in_the_range_are_accepted(version):
    check_vllm_version(Version(version))


@pytest.mark.parametrize("version", ["0.19.1", "0.10.2", "0.33.0", "1.0.0", "0.33.0rc1"])
def test_releases_outside_the_range_are_refused_naming_it(version):
    with pytest.raises(BackendUnavailableError) as info:
        check_vllm_version(Version(version))
    message = str(info.value)
    assert f"vLLM {version} is not supported" in message
    assert str(SUPPORTED_VLLM) in message and "backend='transformers'" in message


def test_the_installed_build_is_read_from_its_metadata_and_is_supported():
    import importlib.util

    if importlib.util.find_spec("vllm") is None:  # finds the package without importing it
        pytest.skip("needs the vllm extra")
    version = installed_vllm_version()
    assert version is not None and SUPPORTED_VLLM.contains(Version(version.base_version))


def test_cuda_graphs_by_default_on_a_gpu_and_eager_on_the_cpu_build():
    assert default_enforce_eager(on_cpu=False) is False
    assert default_enforce_eager(on_cpu=True) is True
