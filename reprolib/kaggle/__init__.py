"""Kaggle kernel bundles: push a table's notebook to Kaggle, resume there, pull the outputs back.

* :mod:`~reprolib.kaggle.bundle` — the kernel folder: metadata + the notebook carrying the package;
* :mod:`~reprolib.kaggle.kernel` — what runs inside the kernel: the bootstrap cell, mounted datasets;
* :mod:`~reprolib.kaggle.remote` — push / pull / status with the official ``kaggle`` CLI;
* :mod:`~reprolib.kaggle.credentials` — the user name, and scrubbing credentials from the CLI's output
  (none is ever written);
* :mod:`~reprolib.kaggle.command` — ``python -m reprolib.kaggle push|pull`` (``make kaggle-push/-pull``).
"""

from reprolib.io import ReprolibDataError
from reprolib.kaggle.bundle import (
    DATASET_REF_RE,
    DEFAULT_ACCELERATOR,
    IMAGE_PINNED,
    KERNEL_METADATA,
    KERNEL_PACKAGES,
    PACKAGE_SUFFIXES,
    TOP_FILES,
    build_bundle,
    bundle_files,
    kernel_pins,
    package_zip,
    slugify,
)
from reprolib.kaggle.command import main, push_parameters
from reprolib.kaggle.credentials import kaggle_username, scrub
from reprolib.kaggle.kernel import BOOTSTRAP, KernelCode, mounted_dataset
from reprolib.kaggle.remote import PUSH_ERRORS, check_push_output, pull, push, results_profile, status

__all__ = ["BOOTSTRAP", "DATASET_REF_RE", "DEFAULT_ACCELERATOR", "IMAGE_PINNED", "KERNEL_METADATA", "KERNEL_PACKAGES",
           "PACKAGE_SUFFIXES", "PUSH_ERRORS", "TOP_FILES", "KernelCode", "ReprolibDataError", "build_bundle",
           "bundle_files", "check_push_output", "kaggle_username", "kernel_pins", "main", "mounted_dataset",
           "package_zip", "pull", "push", "push_parameters", "results_profile", "scrub", "slugify", "status"]
