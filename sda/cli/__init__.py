"""The command-line frontend: argparse commands, the torchrun launcher, terminal progress."""
