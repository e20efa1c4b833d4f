"""``python -m reprolib.world --out DIR [--seed S] [--size HxW] [--n-train N] ...``"""

from __future__ import annotations

import sys

from reprolib import cli
from reprolib.world import generate_world
from reprolib.world.writer import DEFAULT_COUNTS, check_world_args


def main(argv: list[str] | None = None) -> None:
    p = cli.ArgumentParser(prog="python -m reprolib.world", description=__doc__)
    p.add_argument("--out", required=True, help="the folder the world is written to, in the real datasets' formats")
    p.add_argument("--seed", type=cli.count, default=0, help="every image's layout and texture (default: %(default)s)")
    size = (256, 512)
    p.add_argument("--size", type=cli.size_hw, default=size, help=f"HxW, e.g. 256x512 (default: {size[0]}x{size[1]})")
    p.add_argument("--n-train", type=cli.count, default=DEFAULT_COUNTS["n_train"],
                   help="Cityscapes-format train images (default: %(default)s)")
    p.add_argument("--n-val", type=cli.count, default=DEFAULT_COUNTS["n_val"],
                   help="Cityscapes-format val images (default: %(default)s)")
    p.add_argument("--n-laf", type=cli.count, default=DEFAULT_COUNTS["n_laf"],
                   help="Lost & Found-format images with their Fishyscapes masks (default: %(default)s)")
    p.add_argument("--n-static", type=cli.count, default=None,
                   help=f"default: {DEFAULT_COUNTS['n_static']}, or --n-val if fewer (Static overlays val images)")
    a = p.parse_args(argv)
    if a.n_static is None:
        a.n_static = min(DEFAULT_COUNTS["n_static"], a.n_val)
    try:
        check_world_args(a.size, a.n_train, a.n_val, a.n_laf, a.n_static)
    except ValueError as exc:  # name the option, not the keyword
        arg, _, problem = str(exc).partition(": ")
        raise cli.UsageError("--" + arg.replace("_", "-"), problem) from None
    cli.check_output_dir("--out", a.out)
    generate_world(a.out, seed=a.seed, size=a.size, n_train=a.n_train, n_val=a.n_val, n_laf=a.n_laf,
                   n_static=a.n_static)


if __name__ == "__main__":
    sys.exit(cli.run(main))
