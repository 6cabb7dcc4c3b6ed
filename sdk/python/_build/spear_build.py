"""A PEP 517 build backend in the standard library alone.

PyPI may be out of reach where this SDK is installed, and pip would fetch
setuptools or another backend from it to build even a pure-Python package.
This backend needs nothing: it packs the ``spear`` package and its metadata,
read from pyproject.toml, into a wheel (or an sdist, or an editable wheel
that points at this directory).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "spear"


def _project() -> Dict[str, str]:
    """The string fields of pyproject.toml's [project] table."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib  # Python 3.11+

        table = tomllib.loads(text)["project"]
        return {k: v for k, v in table.items() if isinstance(v, str)}
    except ImportError:
        pass
    fields, section = {}, ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]").strip()
        elif section == "project":
            m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"\s*$', line)
            if m:
                fields[m.group(1)] = m.group(2)
    return fields


def _names() -> Tuple[Dict[str, str], str]:
    p = _project()
    return p, f"{re.sub(r'[-_.]+', '_', p['name']).lower()}-{p['version']}"


def _metadata(p: Dict[str, str]) -> bytes:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
    ]
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    readme = os.path.join(ROOT, p.get("readme", "README.md"))
    body = ""
    if os.path.exists(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            body = f.read()
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def _wheel_file() -> bytes:
    return b"Wheel-Version: 1.0\nGenerator: spear_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _package_files() -> List[Tuple[str, str]]:
    """(archive path, file path) of every file of the package."""
    out = []
    base = os.path.join(ROOT, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith((".py", ".typed")):
                path = os.path.join(dirpath, name)
                out.append((os.path.relpath(path, ROOT).replace(os.sep, "/"), path))
    return out


def _write_wheel(directory: str, files: List[Tuple[str, bytes]]) -> str:
    p, stem = _names()
    dist_info = f"{stem}.dist-info"
    files = files + [(f"{dist_info}/METADATA", _metadata(p)), (f"{dist_info}/WHEEL", _wheel_file())]
    record = []
    name = f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            z.writestr(zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0)), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        z.writestr(zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
    return name


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# The PEP 517 and PEP 660 hooks.


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    return _write_wheel(wheel_directory, [(arc, _read(path)) for arc, path in _package_files()])


def build_editable(wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None) -> str:
    # A .pth file puts this directory on sys.path, so edits take effect.
    return _write_wheel(wheel_directory, [(f"_{PACKAGE}_editable.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    p, stem = _names()
    name = f"{stem}.tar.gz"
    paths = ["pyproject.toml", p.get("readme", "README.md"), "_build/spear_build.py"]
    paths += [arc for arc, _ in _package_files()]
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for rel in paths:
            full = os.path.join(ROOT, rel)
            if os.path.exists(full):
                tar.add(full, arcname=f"{stem}/{rel}")
        info = tarfile.TarInfo(f"{stem}/PKG-INFO")
        data = _metadata(p)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return name
