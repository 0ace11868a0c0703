"""The extension and the tools for `pip install .`, built by the project's CMake.

setuptools drives the build (pyproject.toml); CMake builds _shmtimer, shmtimerd and
timer-dump exactly as `cmake --build` does, and this copies them into the package:
the module next to __init__.py, the two programs under shmtimer/bin, which the console
scripts `shmtimerd` and `timer-dump` (shmtimer/_tools.py) run.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def pybind11_cmake_dir():
    try:
        import pybind11
        return pybind11.get_cmake_dir()
    except ImportError:  # Debian's pybind11-dev installs its CMake files system-wide
        return None


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        package = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build = Path(self.build_temp).resolve() / "cmake"
        configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                     "-DSHMTIMER_BUILD_TESTS=OFF", "-DSHMTIMER_BUILD_BENCH=OFF", "-DSHMTIMER_BUILD_PYTHON=ON",
                     "-DPython3_EXECUTABLE=" + sys.executable]
        if pybind11_cmake_dir():
            configure.append("-Dpybind11_DIR=" + pybind11_cmake_dir())
        subprocess.run(configure, check=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "_shmtimer", "shmtimerd", "timer-dump"], check=True)
        package.mkdir(parents=True, exist_ok=True)
        shutil.copy2(next((build / "python" / "shmtimer").glob("_shmtimer*.so")), self.get_ext_fullpath(ext.name))
        (package / "bin").mkdir(exist_ok=True)
        for program in (build / "tools" / "shmtimerd", build / "tools" / "timer-dump" / "timer-dump"):
            shutil.copy2(program, package / "bin" / program.name)
            os.chmod(package / "bin" / program.name, 0o755)


setup(ext_modules=[Extension("shmtimer._shmtimer", sources=[])], cmdclass={"build_ext": CMakeBuild})
