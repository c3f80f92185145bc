"""Can the observation encoder alone read Inbox's rules from the instruction's bytes? A diagnostic.

The supervised Inbox probe once learned the spam rule (shown once, at step 0) in few seeds, and
``bench/inbox_text_reader.py`` tested one explanation: the rule's phrase moves between byte offsets, which a
per-position linear pooling must learn at every offset. This script takes memory, the core and the probe out: it
trains ``ObservationEncoder`` (the agent's own, at ``d_model``) plus a small MLP head, by supervision, to predict from
an instruction's 256 bytes whether spam may be deleted and what is to be archived, on fresh instructions of the
training word lists each step, and reports accuracy on fresh instructions it never saw (``--split`` picks their word
lists). If it reaches 1.00 quickly, the encoder can read the rules, and a probe that does not learn them is missing a
training signal, not a reader (docs/benchmarks.md, "Inbox: reading the rule is a gradient path").

    python bench/inbox_rule_encoding.py                       # seeds 0 1 2, 300 steps, held out on "train" word lists
    python bench/inbox_rule_encoding.py --split heldout       # word lists the encoder never saw
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from devlearn.probes.inbox import rule_reading

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="Adam steps")
    parser.add_argument("--batch", type=int, default=32, help="instructions a step")
    parser.add_argument("--d-model", type=int, default=64, help="the encoder's width (agent.core.d_model)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--split", choices=("train", "heldout"), default="train", help="word lists of the test set")
    parser.add_argument("--every", type=int, default=50, help="evaluate every this many steps")
    parser.add_argument("--tag", default="", help="suffix of the results file")
    args = parser.parse_args()
    for name in ("steps", "batch", "d_model", "every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    begun = time.perf_counter()
    runs = []
    for seed in args.seeds:
        curve = rule_reading(seed, args.steps, args.batch, args.d_model, args.lr, args.split, args.every)
        for point in curve:
            print(f"seed {seed}: {point}", flush=True)
        runs.append({"seed": seed, "curve": curve})
    out = RESULTS / f"inbox_rule_encoding{'-' + args.tag if args.tag else ''}.json"
    machine = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__}
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "runs": runs,
                               "wall_seconds": round(time.perf_counter() - begun, 1)}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
