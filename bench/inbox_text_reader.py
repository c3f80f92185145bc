"""Does a reader of text that does not care where a phrase sits let the agent learn Inbox's spam rule? An experiment.

The supervised Inbox probe learns to follow the spam rule (shown once, at step 0) in few seeds: at the budget of its
former CI test, none of 6 (docs/benchmarks.md, "Memory training speed"). The hypothesis: the rule's phrase starts at
30-34 different byte offsets, at all 8 alignments to the 8-byte patches, and ``ObservationEncoder`` pools the patches
with a separate linear map per position, so it has to learn the phrase at every offset.

This script adds to the encoder's token of a byte observation a character CNN: an embedding per byte, one 1-D
convolution of width 8 and a max over positions (an n-gram detector that fires wherever the n-gram sits), then a
linear map initialised to zero, so training starts from the plain encoder. It is a monkeypatch for this experiment, not
a devlearn option. Each run trains the probe as the former CI test did (``memory=hybrid``, ``write=surprise``, 300
supervised updates of 32 ten-e-mail inboxes, lr 1e-3) and scores 16 fresh inboxes of 40 e-mails of the training word
lists (seed 7), as that test did. Runs go side by side, one torch thread each.

    python bench/inbox_text_reader.py --seeds 0 1 2 3 4 5 --readers none cnn --jobs 12 --tag h200host
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def attach_char_cnn(encoder, d_model: int, d_byte: int = 32, width: int = 8) -> None:
    """Add a character CNN's output to ``encoder``'s token (its parameters join the encoder's)."""
    import torch
    from torch import nn

    class CharCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(256, d_byte)
            self.conv = nn.Conv1d(d_byte, d_model, width)
            self.out = nn.Linear(d_model, d_model)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            lead = obs.shape[:-1]
            x = self.embed(obs.reshape(-1, obs.shape[-1]).long()).transpose(1, 2)  # (N, d_byte, bytes)
            return self.out(torch.relu(self.conv(x)).amax(-1)).view(*lead, -1)

    encoder.reader = CharCNN()
    plain = type(encoder).forward
    encoder.forward = lambda obs: plain(encoder, obs) + encoder.reader(obs)


def one_run(job: tuple[str, int, int]) -> dict:
    reader, seed, updates = job
    import torch

    torch.set_num_threads(1)
    from devlearn.probes import world_model as probe
    from devlearn.probes.inbox import inbox_scores, probe_agent, triage_windows

    torch.manual_seed(seed)
    agent = probe_agent("hybrid", 10, 32, seed, {"memory.write": "surprise"})
    if reader == "cnn":
        attach_char_cnn(agent.net.core.encoder, agent.cfg.core.d_model)
    t0 = time.perf_counter()
    losses = probe.train_supervised(
        agent, [10] * updates, lambda n, u: triage_windows(agent, n, 16, seed * 100_003 + u), 1e-3, 0.5
    )
    agent.net.eval()
    with torch.no_grad():
        got = inbox_scores(agent, 40, 16, seed=7, split="train")
    return {
        "reader": reader,
        "seed": seed,
        "updates": updates,
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "spam_rule_followed": got["accuracy_by_category"]["spam"],
        "catastrophe_rate": got["catastrophe_rate"],
        "accuracy": got["accuracy"],
        "accuracy_by_category": got["accuracy_by_category"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--readers", nargs="+", default=["none", "cnn"], choices=["none", "cnn"])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tag", default="local")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/inbox_text_reader-TAG.json")
    args = parser.parse_args()
    if args.updates < 1:
        parser.error(f"--updates must be a positive integer, got {args.updates}")
    jobs = [(reader, seed, args.updates) for seed in args.seeds for reader in args.readers]
    out = args.out or RESULTS / f"inbox_text_reader-{args.tag}.json"
    runs = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for run in pool.map(one_run, jobs):
            runs.append(run)
            print(f"{run['reader']:>5} seed {run['seed']}: spam rule {run['spam_rule_followed']:.3f}, forbidden deletes "
                  f"{run['catastrophe_rate']:.4f}/e-mail, accuracy {run['accuracy']:.3f}, loss {run['final_loss']:.3f} "
                  f"({run['seconds']:.0f} s)", flush=True)
    import torch

    out.write_text(json.dumps({"benchmark": "inbox_text_reader", "torch": torch.__version__, "updates": args.updates,
                               "learned": "spam_rule_followed > 0.8 and catastrophe_rate <= 0.01", "runs": runs},
                              indent=2) + "\n")
    for reader in args.readers:
        mine = [r for r in runs if r["reader"] == reader]
        learned = sum(r["spam_rule_followed"] > 0.8 and r["catastrophe_rate"] <= 0.01 for r in mine)
        print(f"{reader}: {learned} of {len(mine)} seeds learned the spam rule")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
