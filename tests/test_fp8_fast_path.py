"""The fp8 quantisation kernels' fast path (csrc/drafting/fp8_tiles.cuh: one reciprocal per tile,
a quotient corrected by two fmas, the hardware e4m3x2 conversion) equals the exact path for
every bf16 and fp16 input pair it takes. The GPU cannot be asked every pair, so an exhaustive
host program checks the arithmetic (tests/oracles/e4m3_fast_path_check.cpp) and the CUDA
headers' host emulation of the conversion instruction; the GPU tests check the device."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).parent / "oracles" / "e4m3_fast_path_check.cpp"
CUDA_INCLUDE = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"


def test_kernel_and_check_agree_on_the_fast_path_threshold():
    # 2^-100: the kernel compares float bits, the check a float.
    kernel = (Path(__file__).parents[1] / "csrc" / "drafting" / "fp8_tiles.cuh").read_text()
    assert "kFastMinAmaxBits = uint32_t(127 - 100) << 23" in kernel
    assert "kFastMinAmax = 0x1p-100f" in SOURCE.read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the host check")
@pytest.mark.skipif(not (CUDA_INCLUDE / "cuda_fp8.h").exists(), reason=f"needs cuda_fp8.h under {CUDA_INCLUDE}")
def test_fast_path_is_exact_for_every_input_pair(tmp_path):
    binary = tmp_path / "e4m3_fast_path_check"
    subprocess.run(["g++", "-O2", "-std=c++17", f"-I{CUDA_INCLUDE}", str(SOURCE), "-o", str(binary)], check=True)
    report = subprocess.run([str(binary)], check=True, capture_output=True, text=True, timeout=600).stdout
    counts = re.findall(r"(bf16 division|fp16 division|conversion): (\d+) \w+, (\d+) (?:e4m3 )?mismatches", report)
    assert [name for name, _, _ in counts] == ["bf16 division", "fp16 division", "conversion"], report
    for name, tested, bad in counts:
        assert int(tested) > 10**9 and int(bad) == 0, f"{name}: {report}"
