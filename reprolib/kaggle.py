"""Kaggle kernel bundles: push a table's notebook to Kaggle, resume there, pull the outputs back.

A Kaggle kernel push uploads exactly one code file, so the bundle's notebook carries ``reprolib`` itself:
a bootstrap cell unpacks an embedded zip of the package's tracked files, puts it on ``sys.path`` and pip
installs the few packages the Kaggle image lacks at the versions pinned in ``requirements.txt``, with the
image's torch/torchvision held as constraints (a failed install stops the notebook with the pip output).
The kernel lists its own slug in ``kernel_sources``, so each new version mounts the previous version's
output read-only (``/kaggle/input/notebooks/<user>/<slug>/``, or ``/kaggle/input/<slug>/`` on older
images); ``run_table(kaggle=True)`` copies it into ``/kaggle/working`` first (see
:mod:`reprolib.experiments.session`). Real data and backend checkpoints travel as Kaggle datasets listed in
``dataset_sources`` and are found under ``/kaggle/input`` by :func:`mounted_dataset`.

Credentials are read by the official ``kaggle`` CLI (``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``,
``~/.kaggle/kaggle.json``, ``~/.kaggle/access_token``); this module reads only the *username* (to build
the kernel id), never writes a credential, and scrubs every one of them from the CLI output it shows.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from reprolib.io import ReprolibDataError, write_json, write_text

KERNEL_METADATA = "kernel-metadata.json"
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"  # Kaggle's "GPU T4 x2"
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
#: lines of ``kaggle kernels push`` output that mean the push did not (fully) happen, though it exits 0
#: (a data source that is "not valid" is not mounted: the session would run without it; invalid *tags* only
#: lose a label, and no tags are sent)
PUSH_ERRORS = ("Kernel push error", "not valid dataset sources", "not valid competition sources",
               "not valid kernel sources", "error:", "Error:")


def slugify(text: str) -> str:
    """Kaggle-style slug: lower case, runs of other characters → '-'."""
    return _SLUG_RE.sub("-", text.lower()).strip("-")


def kaggle_username(config_dir: str | os.PathLike | None = None) -> str:
    """The Kaggle user name from ``KAGGLE_USERNAME`` or ``kaggle.json`` (the key is never read into output)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    cfg_dir = Path(config_dir or os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    cfg = cfg_dir / "kaggle.json"
    if not cfg.is_file():
        raise ReprolibDataError(cfg, "no Kaggle credentials: set KAGGLE_USERNAME/KAGGLE_KEY or create this file")
    try:
        name = json.loads(cfg.read_text())["username"]
    except (json.JSONDecodeError, KeyError):
        raise ReprolibDataError(cfg, "expected a JSON object with 'username' and 'key'") from None
    return str(name)


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
    root = Path(package_root or Path(__file__).resolve().parent.parent)
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
    root = Path(package_root or Path(__file__).resolve().parent.parent)
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


class KernelCode(str):
    """A parameter value written into the kernel as code (evaluated there), not as a literal."""

    def __repr__(self) -> str:
        return str(self)


def mounted_dataset(ref: str, contains: str | None = None, kaggle_input: str | os.PathLike = "/kaggle/input") -> Path:
    """Where Kaggle mounted dataset ``owner/slug`` (``/kaggle/input/<slug>`` or deeper, e.g.
    ``/kaggle/input/datasets/<owner>/<slug>``); with ``contains``, the folder inside it holding that name."""
    base = Path(kaggle_input)
    slug = ref.split("/")[-1]
    found = [p for depth in range(4) for p in sorted(base.glob("/".join(["*"] * depth + [slug]))) if p.is_dir()]
    if contains:
        found = [q for p in found for q in (p, *sorted(p.glob("*")), *sorted(p.glob("*/*")))
                 if (q / contains).exists()]
    if not found:
        listing = sorted(str(p.relative_to(base)) for p in base.glob("*")) if base.is_dir() else []
        raise ReprolibDataError(base, f"dataset {ref!r} not mounted" + (f" (with {contains!r} inside)" if contains else "")
                                + f"; mounted: {listing}. Add it to the kernel's dataset_sources (make kaggle-push)")
    return found[0]


_BOOTSTRAP = '''# reprolib bootstrap (generated by `make kaggle-push`): unpack the embedded package, install what is missing.
import base64, io, os, subprocess, sys, zipfile, pathlib
from importlib import metadata as _md
_on_kaggle = pathlib.Path("/kaggle").is_dir()
_src = pathlib.Path("/kaggle/temp/reprolib_src" if _on_kaggle else "reprolib_src")  # not in the saved output
zipfile.ZipFile(io.BytesIO(base64.b64decode(REPROLIB_ZIP))).extractall(_src)
sys.path.insert(0, str(_src))  # pure Python: no build step, no build isolation, nothing fetched for it
def _have(pin):
    name, version = pin.split("==")
    try:
        return _md.version(name) == version
    except _md.PackageNotFoundError:
        return False
_need = [p for p in KERNEL_PINS if not _have(p)]
if _need:
    # the image's CUDA torch (and numpy) stay as they are: pip must resolve around them or fail
    _installed = {(d.metadata["Name"] or "").lower() for d in _md.distributions()}
    _held = [f"{n}=={_md.version(n)}" for n in IMAGE_PINNED if n in _installed]
    (_src / "constraints.txt").write_text("\\n".join(_held) + "\\n")
    _r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *_need, "-c", str(_src / "constraints.txt")],
                        capture_output=True, text=True)
    if _r.returncode != 0:
        raise RuntimeError("reprolib: could not install " + " ".join(_need) + " beside " + " ".join(_held)
                           + " (is the kernel's internet on?):\\n" + _r.stdout[-2000:] + _r.stderr[-4000:])
if WANDB_SECRET and "WANDB_API_KEY" not in os.environ:  # online logging: the key lives in Kaggle Secrets only
    try:
        from kaggle_secrets import UserSecretsClient
        os.environ["WANDB_API_KEY"] = UserSecretsClient().get_secret("WANDB_API_KEY")
    except Exception as _exc:
        raise RuntimeError("reprolib: wandb_mode='online' needs a Kaggle Secret named WANDB_API_KEY attached to "
                           "this notebook (Add-ons → Secrets), or push with --wandb offline") from _exc
print("reprolib ready:", ", ".join(KERNEL_PINS), "| image:", ", ".join(f"{n} {_md.version(n)}" for n in ("torch",)))
'''


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
        if not _REF_RE.fullmatch(src):
            raise ValueError(f"dataset source {src!r} must be 'owner/dataset-slug'")
    if docker_pinning not in (None, "original", "latest"):
        raise ValueError(f"docker_pinning must be 'original', 'latest' or None, got {docker_pinning!r}")
    root = Path(package_root or Path(__file__).resolve().parent.parent)
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
                                                 + _BOOTSTRAP))

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


def _kaggle_cli() -> list[str]:
    exe = shutil.which("kaggle")
    if exe:
        return [exe]
    return [os.environ.get("PYTHON", "python"), "-m", "kaggle"]


def _secrets() -> list[str]:
    """Every credential kaggle 2.x (and wandb) may be using here: env values, token files, kaggle.json's key."""
    found = [os.environ.get(k, "") for k in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "WANDB_API_KEY")]
    token = os.environ.get("KAGGLE_API_TOKEN", "")
    files = [Path.home() / ".kaggle" / "access_token", Path.home() / ".kaggle" / "access_token.txt"]
    if token and len(token) < 4096 and Path(token).is_file():
        files.append(Path(token))
    for f in files:
        try:
            found.append(f.read_text().strip())
        except OSError:
            pass
    for cfg in {Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json",
                Path.home() / ".kaggle" / "kaggle.json"}:
        try:
            found.append(str(json.loads(cfg.read_text()).get("key", "")))
        except (OSError, ValueError, AttributeError):
            pass
    return sorted({s for s in found if len(s) >= 8}, key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with every credential value replaced by ``***``."""
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def _run_cli(args: list[str]) -> str:
    proc = subprocess.run(_kaggle_cli() + args, capture_output=True, text=True, env=os.environ.copy())
    out = scrub(proc.stdout + proc.stderr)  # never echo a credential back into logs or notebooks
    if proc.returncode != 0:
        raise RuntimeError(f"kaggle {' '.join(args)} failed (exit {proc.returncode}):\n{out}")
    return out


def check_push_output(out: str) -> str:
    """Raise with the reason when ``kaggle kernels push`` printed an error (it exits 0 on those)."""
    problems = [line for line in out.splitlines() if any(e in line for e in PUSH_ERRORS)]
    if problems or "successfully" not in out:
        reason = "\n".join(problems) or "no 'successfully pushed' line in the CLI output"
        raise RuntimeError(f"kaggle kernels push failed:\n{reason}\n--- full output ---\n{out}")
    return out


def push(bundle_dir: str | os.PathLike, timeout_s: int | None = None, accelerator: str | None = None) -> str:
    """``kaggle kernels push -p bundle_dir`` with the official CLI; returns its output, raises on any error."""
    args = ["kernels", "push", "-p", str(bundle_dir)]
    if timeout_s:
        args += ["-t", str(int(timeout_s))]
    if accelerator:
        args += ["--accelerator", accelerator]
    return check_push_output(_run_cli(args))


def pull(kernel_id: str, dest: str | os.PathLike, table: str | None = None,
         work: str | os.PathLike = "build/kaggle-pull") -> list[Path]:
    """Download a kernel's output; with ``table``, only ``results/<table>/*`` lands in ``dest`` (where
    ``make report`` reads it), else every file. Returns the files placed in ``dest``."""
    dest = Path(dest)
    if table is None:
        dest.mkdir(parents=True, exist_ok=True)
        _run_cli(["kernels", "output", kernel_id, "-p", str(dest), "--force"])
        return sorted(p for p in dest.rglob("*") if p.is_file())
    tmp = Path(work) / slugify(kernel_id)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"results/{table}/"
    _run_cli(["kernels", "output", kernel_id, "-p", str(tmp), "--force", "--file-pattern", "^" + re.escape(prefix)])
    got = sorted(p for p in (tmp / prefix).rglob("*") if p.is_file()) if (tmp / prefix).is_dir() else []
    if not got:
        raise RuntimeError(f"kernel {kernel_id} has no {prefix} in its output (still running, or failed? "
                           f"see `kaggle kernels status {kernel_id}` and the log in {tmp})")
    placed = []
    for p in got:
        target = dest / p.relative_to(tmp / prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, target)
        placed.append(target)
    return placed


def status(kernel_id: str) -> str:
    """``kaggle kernels status KERNEL``."""
    return _run_cli(["kernels", "status", kernel_id]).strip()


def _dataset_ref(value: str, what: str) -> str:
    if not _REF_RE.fullmatch(value):
        raise ValueError(f"{what} must be a Kaggle dataset 'owner/slug', got {value!r}: upload the folder first "
                         "(`kaggle datasets create -p FOLDER`, see the README) and pass its owner/slug")
    return value


def push_parameters(args: Any) -> tuple[dict[str, Any], list[str]]:
    """The notebook parameters and dataset sources of a push (data and checkpoints resolved in the kernel)."""
    params: dict[str, Any] = {
        "profile": args.profile,
        "work_dir": "/kaggle/working/data",
        "output_dir": f"/kaggle/working/results/{args.table}",
        "max_time": args.max_time,
        "device": "auto",
        "wandb_mode": args.wandb,
    }
    datasets = [_dataset_ref(d, "--datasets") for d in args.datasets.split(",") if d]
    mount = "__import__('reprolib.kaggle', fromlist=['mounted_dataset']).mounted_dataset"
    if args.data:
        datasets.append(_dataset_ref(args.data, "--data"))
        params["data_root"] = KernelCode(f"str({mount}({args.data!r}, contains='cityscapes'))")
    if args.checkpoints:
        if not args.checkpoints_dataset:
            raise ValueError("--checkpoints needs --checkpoints-dataset owner/slug (the dataset holding the files)")
        datasets.append(_dataset_ref(args.checkpoints_dataset, "--checkpoints-dataset"))
        pairs = dict(item.split("=", 1) for item in args.checkpoints.split(",") if "=" in item)
        if not pairs:
            raise ValueError("--checkpoints must be name=file[,name=file…], e.g. deepwv3plus=cityscapes_best.pth")
        where = f"{mount}({args.checkpoints_dataset!r})"
        params["checkpoints"] = KernelCode("{" + ", ".join(f"{k!r}: str({where} / {v!r})" for k, v in pairs.items()) + "}")
    return params, list(dict.fromkeys(datasets))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m reprolib.kaggle push|pull --table table4 ...`` (used by ``make kaggle-push/-pull``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reprolib.kaggle", description=main.__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_push = sub.add_parser("push", help="build the kernel bundle for a table and push it")
    p_push.add_argument("--table", required=True)
    p_push.add_argument("--profile", default="demo")
    p_push.add_argument("--data", default="", help="Kaggle dataset owner/slug holding cityscapes/, lostandfound/, "
                                                    "fishyscapes/ (default: the embedded world)")
    p_push.add_argument("--checkpoints-dataset", default="", help="Kaggle dataset owner/slug holding backend weights")
    p_push.add_argument("--checkpoints", default="", help="name=file,... inside it, e.g. deepwv3plus=cityscapes_best.pth")
    p_push.add_argument("--datasets", default="", help="more comma-separated owner/slug Kaggle datasets to mount")
    p_push.add_argument("--max-time", default="00:11:00:00",
                        help="the whole session's budget (Kaggle stops a session at 12 h)")
    p_push.add_argument("--accelerator", default=DEFAULT_ACCELERATOR, help="Kaggle machine shape ('none': CPU)")
    p_push.add_argument("--docker-pinning", default="original", choices=("original", "latest"),
                        help="'original': every version runs the first version's Docker image")
    p_push.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                        help="online needs a WANDB_API_KEY Kaggle Secret attached to the notebook (see README)")
    p_push.add_argument("--build-dir", default="build/kaggle")
    p_push.add_argument("--dry-run", action="store_true", help="build the bundle only")
    p_pull = sub.add_parser("pull", help="fetch a table kernel's results into results/<table>/")
    p_pull.add_argument("--table", required=True)
    p_pull.add_argument("--dest", default=None)
    args = parser.parse_args(argv)

    slug = f"reprolib-{args.table}"
    if args.cmd == "push":
        root = Path(__file__).resolve().parent.parent
        params, datasets = push_parameters(args)
        gpu = args.accelerator.lower() != "none"
        bundle = build_bundle(root / "notebooks" / f"{args.table}.ipynb", Path(args.build_dir) / args.table,
                              slug=slug, parameters=params, dataset_sources=datasets, enable_gpu=gpu,
                              accelerator=args.accelerator if gpu else None, docker_pinning=args.docker_pinning,
                              wandb_secret=args.wandb == "online")
        print(f"bundle: {bundle}")
        if not args.dry_run:
            print(push(bundle, accelerator=args.accelerator if gpu else None))
    else:
        dest = Path(args.dest or Path("results") / args.table)
        files = pull(f"{kaggle_username()}/{slug}", dest, table=args.table)
        print(f"{len(files)} result files → {dest}")


if __name__ == "__main__":
    import sys

    try:
        main()
    except (ReprolibDataError, ValueError, RuntimeError) as exc:
        sys.exit(f"error: {exc}")
