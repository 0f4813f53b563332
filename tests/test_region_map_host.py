"""The device-side region map (csrc/drafting/region_geometry.cuh) against the layout contract, on
the host: a C++ program (tests/oracles/region_map_check.cpp) compiles the header with g++ and
compares every row of thousands of layouts with an enumeration written from docs/CONTRACT.md. The
GPU tests check the kernels that use it; this covers layouts they do not reach, without a GPU."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "tests" / "oracles" / "region_map_check.cpp"
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the host check")
@pytest.mark.skipif(not (CUDA_INCLUDE / "cuda_runtime.h").exists(),
                    reason=f"needs cuda_runtime.h under {CUDA_INCLUDE}")
def test_region_map_places_every_row_as_the_contract_says(tmp_path):
    binary = tmp_path / "region_map_check"
    subprocess.run(["g++", "-O2", "-std=c++17", f"-I{ROOT / 'include'}", f"-I{CUDA_INCLUDE}", str(SOURCE),
                    "-o", str(binary)], check=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    counts = re.search(r"layouts: (\d+), rows: (\d+), mismatches: (\d+)", result.stdout)
    assert counts, result.stdout + result.stderr
    layouts, rows, mismatches = map(int, counts.groups())
    assert result.returncode == 0 and mismatches == 0, result.stdout
    assert layouts == 3 * 7 * 7 * 3 * 4 * 2 and rows > 10**6
