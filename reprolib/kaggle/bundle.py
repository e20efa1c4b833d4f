"""The kernel bundle: a folder with ``kernel-metadata.json`` and a table's notebook that carries ``reprolib``.

A Kaggle kernel push uploads exactly one code file, so the bundle's notebook carries ``reprolib`` itself:
a bootstrap cell (:data:`reprolib.kaggle.kernel.BOOTSTRAP`) unpacks an embedded zip of the package's tracked
files, puts it on ``sys.path`` and pip installs the few packages the Kaggle image lacks at the versions pinned
in ``requirements.txt``, with the image's torch/torchvision held as constraints (a failed install stops the
notebook with the pip output).
"""

from __future__ import annotations

import base64
import copy
import io
import os
import re
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from reprolib.io import ReprolibDataError, write_json, write_text
from reprolib.kaggle.credentials import kaggle_username
from reprolib.kaggle.kernel import BOOTSTRAP

#: the repository (or unpacked sdist) holding ``reprolib/``, ``notebooks/``, ``requirements.txt``
REPO_ROOT = Path(__file__).resolve().parents[2]
KERNEL_METADATA = "kernel-metadata.json"
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # Kaggle's "GPU T4 x2"
_SLUG_RE = re.compile(r"[^a-z0-9]+")
DATASET_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def slugify(text: str) -> str:
    """Kaggle-style slug: lower case, runs of other characters → '-'."""
    return _SLUG_RE.sub("-", text.lower()).strip("-")


TOP_FILES = ("pyproject.toml", "requirements.txt", "README.md")
#: outside git (an unpacked sdist): only these kinds of package files travel
PACKAGE_SUFFIXES = (".py", ".yaml", ".typed")
#: what the Kaggle image lacks; installed at the pins of requirements.txt (torch & co. are the image's)
KERNEL_PACKAGES = ("lightning", "torchmetrics", "cityscapesscripts", "natsort")
#: kept as the image ships them: pip may not replace them while installing KERNEL_PACKAGES
IMAGE_PINNED = ("torch", "torchvision", "torchaudio", "numpy")


def bundle_files(package_root: Path | None = None) -> list[str]:
    """The files a bundle carries: the git-tracked files of ``reprolib/`` (an allow-list: a stray or
    ignored file never travels) plus ``pyproject.toml``, ``requirements.txt``, ``README.md``."""
    root = Path(package_root or REPO_ROOT)
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", "reprolib"], cwd=root, capture_output=True,
                                check=True).stdout.decode().split("\0")
        files = [f for f in listed if f and (root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:  # not a git checkout: the package-data allow-list
        files = sorted(p.relative_to(root).as_posix() for p in (root / "reprolib").rglob("*")
                       if p.is_file() and p.suffix in PACKAGE_SUFFIXES and "__pycache__" not in p.parts)
    if not files:
        raise ReprolibDataError(root / "reprolib", "no package files found to bundle")
    return [n for n in TOP_FILES if (root / n).is_file()] + sorted(files)


def package_zip(package_root: Path | None = None) -> bytes:
    """Zip the files of :func:`bundle_files` in memory (fixed timestamps: the same tree gives the same bytes)."""
    root = Path(package_root or REPO_ROOT)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in bundle_files(root):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (root / name).read_bytes())
    return buf.getvalue()


def kernel_pins(requirements: str) -> list[str]:
    """``name==version`` of :data:`KERNEL_PACKAGES` from a requirements text (every one must be pinned)."""
    pins = {}
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    missing = [p for p in KERNEL_PACKAGES if p not in pins]
    if missing:
        raise ValueError(f"requirements.txt pins none of {missing}: the kernel installs exact versions only")
    return [f"{p}=={pins[p]}" for p in KERNEL_PACKAGES]


def build_bundle(
    notebook: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    slug: str,
    username: str | None = None,
    title: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    dataset_sources: Sequence[str] = (),
    enable_gpu: bool = True,
    enable_internet: bool = True,
    is_private: bool = True,
    package_root: Path | None = None,
    accelerator: str | None = DEFAULT_ACCELERATOR,
    docker_pinning: str | None = "original",
    wandb_secret: bool = False,
) -> Path:
    """Write a Kaggle kernel folder (``kernel-metadata.json`` + notebook) ready for ``kaggle kernels push``.

    ``parameters`` override the notebook's ``parameters`` cell (Papermill-style injected cell after it;
    :class:`KernelCode` values are written as code); ``dataset_sources`` are ``owner/slug`` Kaggle datasets
    (e.g. the data root, the backend checkpoints). ``accelerator``: Kaggle's machine shape (e.g.
    ``NvidiaTeslaT4``; None: the CLI's default). ``docker_pinning``: ``"original"`` keeps the Docker image
    of the kernel's first version for every later version (the sessions of a chain run the same torch),
    ``"latest"`` takes the newest image, None leaves Kaggle's default. The kernel needs the internet (pip).
    ``wandb_secret``: read ``WANDB_API_KEY`` from the notebook's Kaggle Secrets into the environment (online
    logging); the key is never in the bundle.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ReprolibDataError(notebook, "notebook not found")
    username = username or kaggle_username()
    slug = slugify(slug)
    title = title or slug.replace("-", " ").title()
    if slugify(title) != slug:
        raise ValueError(f"title {title!r} must slugify to the kernel slug {slug!r} (Kaggle matches them)")
    if len(title) < 5:
        raise ValueError("Kaggle kernel titles need at least 5 characters")
    for src in dataset_sources:
        if not DATASET_REF_RE.fullmatch(src):
            raise ValueError(f"dataset source {src!r} must be 'owner/dataset-slug'")
    if docker_pinning not in (None, "original", "latest"):
        raise ValueError(f"docker_pinning must be 'original', 'latest' or None, got {docker_pinning!r}")
    root = Path(package_root or REPO_ROOT)
    pins = kernel_pins((root / "requirements.txt").read_text() if (root / "requirements.txt").is_file() else "")

    nb = nbformat.read(notebook, as_version=4)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    params = {"kaggle": True, **dict(parameters or {})}
    idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    injected = nbformat.v4.new_code_cell(
        "# Parameters injected by reprolib.kaggle.build_bundle\n"
        + "".join(f"{k} = {v!r}\n" for k, v in params.items()),
        metadata={"tags": ["injected-parameters"]},
    )
    nb.cells.insert(idx + 1 if idx is not None else 0, injected)
    zipped = base64.b64encode(package_zip(root)).decode("ascii")
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"REPROLIB_ZIP = {zipped!r}\nKERNEL_PINS = {pins!r}\n"
                                                 f"IMAGE_PINNED = {list(IMAGE_PINNED)!r}\nWANDB_SECRET = {bool(wandb_secret)}\n"
                                                 + BOOTSTRAP))

    out = Path(out_dir)
    code_file = f"{slug}.ipynb"
    write_text(out / code_file, nbformat.writes(nb))
    kernel_id = f"{username}/{slug}"
    meta = {
        "id": kernel_id,
        "title": title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": is_private,
        "enable_gpu": enable_gpu,
        "enable_tpu": False,
        # The CLI's code default is True while its docs say False: always set it explicitly.
        "enable_internet": enable_internet,
        "dataset_sources": list(dataset_sources),
        # Its own slug: the previous version's output (checkpoints) is mounted under /kaggle/input for resume.
        "kernel_sources": [kernel_id],
        "competition_sources": [],
        "model_sources": [],
        "keywords": [],  # Kaggle tags must be known ones; an unknown tag is only a warning, so send none
    }
    if enable_gpu and accelerator:
        meta["machine_shape"] = accelerator
    if docker_pinning:
        meta["docker_image_pinning_type"] = docker_pinning
    write_json(out / KERNEL_METADATA, meta)
    return out
