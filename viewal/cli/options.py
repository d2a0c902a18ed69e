"""Options shared by several subcommands (one definition each)."""
from __future__ import annotations

import argparse

from viewal.model import DEFAULT_ENCODER, DEFAULT_INIT

__all__ = ["add_network_arguments"]


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """``--encoder`` and ``--init`` with the package defaults, for every command that builds a network."""
    parser.add_argument("--encoder", default=DEFAULT_ENCODER,
                        help="efficientnet-lite0 (offline ImageNet start), mobilenet_v2 (ViewAL's), resnet18, resnet34")
    parser.add_argument("--init", default=DEFAULT_INIT,
                        help="encoder start: imagenet (efficientnet-lite0 only), random, or a file from "
                             "'viewal pretrain' or a 'viewal train' checkpoint")
