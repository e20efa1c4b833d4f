"""``python -m reprolib.world --out DIR [--seed S] [--size HxW] [--n-train N] ...``"""

from __future__ import annotations

import argparse

from reprolib.world import generate_world


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 256x512, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m reprolib.world", description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(256, 512), help="HxW, e.g. 256x512")
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--n-laf", type=int, default=40)
    p.add_argument("--n-static", type=int, default=30)
    a = p.parse_args(argv)
    generate_world(a.out, seed=a.seed, size=a.size, n_train=a.n_train, n_val=a.n_val, n_laf=a.n_laf,
                   n_static=a.n_static)


if __name__ == "__main__":
    main()
