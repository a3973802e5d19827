"""What the two inference-speed benchmarks share: their common options and the random model."""

from __future__ import annotations

import argparse

import torch

from edtalk.model import EDTalk, profile


def speed_parser(doc: str, repeats: int) -> argparse.ArgumentParser:
    """--profile, --batch-size, --repeats, --threads, --json; callers add their own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--profile", default="paper", help="model profile (paper: 256 px)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--json", default=None, help="also write the results here")
    return ap


def random_model(args: argparse.Namespace) -> EDTalk:
    """Applies --threads, then EDTalk of --profile with seed-0 random weights, in eval mode."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return EDTalk(profile(args.profile)).eval()
