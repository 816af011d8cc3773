"""The `gpuconv` command: info, shape, kernels (static kernel report), bench (parity / benchmark), report, tune.

Every error is one line on stderr and exit status 2 (bad flags, missing or malformed files, bad layer
specs); `gpuconv bench` exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from ._console import CommandError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage before its message)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _cmd_info(args) -> int:
    from . import _runtime

    for k, v in _runtime.describe().items():
        print(f"{k:>12}: {v}")
    return 0


def _parse_shape(text: str) -> tuple:
    try:
        shape = tuple(int(p) for p in text.lower().replace("×", "x").split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape must be CxHxW or NxCxHxW of positive sizes, got {text!r}")
    return shape


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _cmd_shape(args) -> int:
    from . import shapes
    from ._console import console

    try:
        layers = [shapes.parse_layer(spec) for spec in args.layers]
        summary = shapes.summarize(args.input, layers)
    except (ValueError, TypeError) as e:
        raise CommandError(str(e)) from None
    console().print(summary.table())
    return 0


def _cmd_kernels(args) -> int:
    from . import kernel_report

    if args.check:            # read here: from the simulator the report runs in a child process
        try:
            with open(args.check, encoding="utf-8") as f:
                json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CommandError(f"{args.check} is not a JSON file ({e})") from None

    return kernel_report.main(args.arch, fail_on_spill=args.fail_on_spill, write_dir=args.write,
                              check_path=args.check, lock_path=args.lock, quiet=args.quiet, only=args.only,
                              jobs=args.jobs)


def _cmd_bench(args) -> int:
    from . import bench_cli

    return bench_cli.main(args)


def _cmd_tune(args) -> int:
    from . import bench_cli

    return bench_cli.tune_main(args)


def _cmd_report(args) -> int:
    from . import bench_cli

    return bench_cli.report_main(args)


def build_parser() -> argparse.ArgumentParser:
    from ._precision import PRECISIONS
    from .shapes import LAYER_GRAMMAR

    p = _Parser(prog="gpuconv", description="Convolution and pooling kernels in Numba CUDA.")
    p.add_argument("--version", action="version", version=f"gpuconv {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("info", help="device (or simulator) and versions").set_defaults(func=_cmd_info)

    sp = sub.add_parser("shape", help="output shape and parameters of a stack of layers",
                        epilog=f"Layers: {LAYER_GRAMMAR}  Example: gpuconv shape 3x224x224 "
                               "'conv 64 7 stride=2 padding=3' 'maxpool 3 stride=2 padding=1'")
    sp.add_argument("input", type=_parse_shape, help="input shape, CxHxW or NxCxHxW (e.g. 3x224x224)")
    sp.add_argument("layers", nargs="*", help="layer specs, each one quoted argument")
    sp.set_defaults(func=_cmd_shape)

    kp = sub.add_parser("kernels", help="the static kernel report: every kernel compiled to sm_90/sm_80 machine "
                                        "code (no GPU needed), its registers, occupancy, hot-loop instruction mix "
                                        "and issue-bound ceiling")
    kp.add_argument("--arch", nargs="+", default=["sm_90", "sm_80"], choices=["sm_90", "sm_80"],
                    help="targets (default: sm_90 sm_80)")
    kp.add_argument("--fail-on-spill", action="store_true", help="exit 1 if a kernel that dispatch uses spills")
    kp.add_argument("--write", metavar="DIR", default=None, help="write <arch>.md and <arch>.json to DIR "
                                                                 "(the committed copy: bench/static)")
    kp.add_argument("--check", metavar="THRESHOLDS", default=None,
                    help="exit 1 if a dispatched kernel is worse than these thresholds (bench/static/thresholds.json)")
    kp.add_argument("--lock", metavar="THRESHOLDS", default=None,
                    help="write today's sm_90 figures as the thresholds (a deliberate commit, with a reason)")
    kp.add_argument("--quiet", action="store_true", help="no table on the terminal")
    kp.add_argument("--only", nargs="+", metavar="KERNEL", default=None,
                    help="measure only these kernels (fast, while working on one)")
    kp.add_argument("--jobs", type=_positive_int, metavar="N", default=None,
                    help="compile in N worker processes (default: one per CPU)")
    kp.set_defaults(func=_cmd_kernels)

    bp = sub.add_parser("bench", help="check every case against the reference, then time it (GPU only)")
    mode = bp.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick layer set (default)")
    mode.add_argument("--full", action="store_true", help="the full standard set and sweeps")
    mode.add_argument("--standard", action="store_true",
                      help="the standard layer set (no sweeps) with the pooling and GEMM cases")
    mode.add_argument("--list", action="store_true", help="list the cases (name, kind, size, sets) and exit")
    bp.add_argument("--algo", nargs="+", default=None, help="algorithms to run (default: all available)")
    bp.add_argument("--layers", nargs="+", metavar="NAME", default=None, help="only these cases (see --list)")
    bp.add_argument("--out", metavar="DIR", default=None, help="folder for results JSON and the report")
    bp.add_argument("--precision", nargs="+", metavar="P", default=["float32"], choices=PRECISIONS,
                    help=f"run the cases in these precisions ({', '.join(PRECISIONS)}; default float32): "
                         "16-bit inputs, or float32 with TF32 allowed, against cuDNN in the same precision")
    bp.set_defaults(func=_cmd_bench)

    rp = sub.add_parser("report", help="re-render the Markdown report and plots of saved results")
    rp.add_argument("results", help="a results JSON written by gpuconv bench --out")
    rp.add_argument("--out", metavar="DIR", default=None,
                    help="folder for report.md and plots (default: the JSON's folder)")
    rp.set_defaults(func=_cmd_report)

    tp = sub.add_parser("tune", help="pre-tune algo='auto' for the standard layer set (GPU: timed and cached)")
    tp.add_argument("--layers", nargs="+", metavar="NAME", default=None, help="only these convolution cases")
    tp.set_defaults(func=_cmd_tune)
    p.set_defaults(commands=tuple(sub.choices))
    return p


def _one_line(e: OSError) -> str:
    """'No such file or directory: /missing.json' rather than '[Errno 2] ...'."""
    if e.filename is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    return str(e)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {', '.join(args.commands)}")
    try:
        return args.func(args)
    except CommandError as e:
        message = str(e)
    except OSError as e:                  # a file to read that is missing, a folder to write that cannot be
        message = _one_line(e)
    except KeyboardInterrupt:
        print(f"gpuconv {args.command}: interrupted", file=sys.stderr)
        return 130
    print(f"gpuconv {args.command}: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
