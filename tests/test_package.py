"""The installation: the C++ extension, the fallback, the entry points, the layering."""

import ast
import os
import pathlib
import random
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cxx_compiler():
    """The C++ compiler setuptools would use, if it is on PATH."""
    cxx = os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++"
    return shutil.which(shlex.split(cxx)[0])


def run_python(code, *flags, cwd=None, **env):
    return subprocess.run([sys.executable, *flags, "-c", code], env={**os.environ, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_extension_was_built_where_a_compiler_exists():
    if not cxx_compiler():
        pytest.skip("no C++ compiler on this machine: the pure-Python fallback is expected")
    from sda.format import container, native

    assert native.extension is not None, "a C++ compiler exists but sda._sdafile did not build: see the pip log"

    # Raises SdaError if the built extension is out of date (lacks the container's functions).
    container.set_backend(container.set_backend("cpp"))


@pytest.mark.parametrize("pure", ["0", "1"])
def test_crc32_matches_zlib_in_both_backends(pure):
    code = (
        "import random, zlib\nfrom sda.format import container\nrnd = random.Random(0)\n"
        "for n in [0, 1, 7, 8, 9, 63, 64, 1000, 1 << 20]:\n"
        "    data = rnd.randbytes(n)\n"
        "    assert container._crc(data) == zlib.crc32(data), n\n"
        "    assert container._crc(data[n // 2:], container._crc(data[:n // 2])) == zlib.crc32(data), n\n"
        "    assert container._crc(memoryview(bytearray(data))) == zlib.crc32(data), n\n"
        "print(container.BACKEND)\n"
    )
    out = run_python(code, SDA_PURE_PYTHON=pure)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("python" if pure == "1" else "cpp" if cxx_compiler() else "python")


def test_crc32_in_process_over_large_buffer():
    from sda.format import container

    data = random.Random(1).randbytes(3 << 20)
    assert container._crc(data) == zlib.crc32(data)


def test_entry_points():
    version = subprocess.run([sys.executable, "-m", "sda", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("sda ")
    script = pathlib.Path(sys.executable).with_name("sda")
    env = subprocess.run([str(script), "env"], capture_output=True, text=True, timeout=120)
    assert env.returncode == 0, env.stderr
    assert "kernel backend on cpu: torch" in env.stdout
    assert f".sda file backend: {'cpp' if cxx_compiler() else 'python'}" in env.stdout


def test_bad_flag_exits_nonzero_without_traceback():
    out = subprocess.run([sys.executable, "-m", "sda", "--no-such-flag"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_kernel_setting_exits_nonzero_without_traceback():
    out = subprocess.run([sys.executable, "-m", "sda", "env"], capture_output=True, text=True,
                         env={**os.environ, "SDA_KERNELS": "fast"})
    assert out.returncode == 2
    assert "SDA_KERNELS='fast' is not one of" in out.stderr and "Traceback" not in out.stderr


def test_kernels_import_nothing_from_the_rest_of_sda():
    for path in (ROOT / "kernels").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n == "sda" or n.startswith("sda.") for n in names), f"{path.name} imports {names}"


@pytest.mark.slow
def test_install_without_a_compiler_falls_back_to_python(tmp_path):
    """A failed extension build must not fail pip; the installed package then warns and works."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("sda", "kernels", "csrc"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "--target", str(target), str(src)],
        env={**os.environ, "CC": "false", "CXX": "false"}, capture_output=True, text=True, timeout=600,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    assert "sda._sdafile was not built" in pip.stdout + pip.stderr
    assert not list(target.glob("sda/_sdafile*"))
    # A normal (not editable) install puts the top-level kernels/ folder at sda/kernels.
    assert (target / "sda" / "kernels" / "assign_triton.py").is_file()

    code = (
        "import warnings\nwarnings.simplefilter('always')\n"
        "from sda.format import native\nprint(native.extension)"
    )
    # -S: without site-packages, so the editable install of this checkout cannot lend its .so.
    out = run_python(code, "-S", cwd=tmp_path, PYTHONPATH=str(target))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None"]
    assert "C++ extension sda._sdafile is not available" in out.stderr

    # The .sda container works there on its pure-Python backend (torch from this environment's
    # site-packages on the path, without running its .pth files, so again without this checkout).
    code = (
        "import torch\nfrom sda.format import container\n"
        "container.write('m.sda', {'w': torch.arange(3.0)}, {'a': 1})\n"
        "tensors, metadata = container.read('m.sda')\n"
        "print(container.BACKEND, tensors['w'].tolist(), metadata)\n"
        "try:\n    container.set_backend('cpp')\nexcept container.SdaError as exc:\n    print(exc)\n"
    )
    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    out = run_python(code, "-S", cwd=tmp_path, PYTHONPATH=path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "python [0.0, 1.0, 2.0] {'a': 1}",
        "the C++ backend is not available: the extension sda._sdafile was not built; "
        "reinstall sda with a C++ compiler present",
    ]
