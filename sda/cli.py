"""The sda command line. `sda env` reports what this installation will compute with.

Training, info, reconstruct and the UI arrive with their issues; they will be subcommands here.
"""

import argparse
import os
import platform
import sys

import sda


def cmd_env(args: argparse.Namespace) -> int:
    """Print the versions, devices and backends sda will use on this machine."""
    import torch

    from sda import native
    from sda.kernels import backend

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"

    print(f"sda {sda.__version__} on Python {platform.python_version()} ({sys.platform})")
    print(f"torch {torch.__version__}, triton {triton_version}")
    print(f"SDA_KERNELS={os.environ.get('SDA_KERNELS', 'auto')}")
    print(f"kernel backend on cpu: {backend(torch.empty(0, 1))}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            dev = torch.device("cuda", i)
            name = torch.cuda.get_device_name(i)
            print(f"kernel backend on {dev} ({name}): {backend(torch.empty(0, 1, device=dev))}")
    else:
        print("cuda: not available")
    print(f".sda file backend: {native.BACKEND}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sda", description=sda.__doc__)
    parser.add_argument("--version", action="version", version=f"sda {sda.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    env = commands.add_parser("env", help="show versions, devices and the kernel backend in use")
    env.set_defaults(run=cmd_env)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except ValueError as exc:  # our errors carry a message meant for the user
        print(f"sda: error: {exc}", file=sys.stderr)
        return 2
