"""``visrep report RUN_DIR``: redraw the learning curves and rebuild report.html of a run."""

from __future__ import annotations

from jsonargparse import ArgumentParser

from visrep.report.html import build_report


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="visrep report", description=__doc__.splitlines()[0], exit_on_error=False
    )
    p.add_argument("run_dir", type=str, help="a run directory written by `visrep fit`")
    return p


def main(argv: list[str]) -> int:
    cfg = build_parser().parse_args(argv)
    print(build_report(cfg.run_dir))
    return 0
