"""Continue hybrid-surprise seed 0 (10:1000, 100:50) with a third stage of 20 updates on 1,000-e-mail inboxes; score it.

Run from the repo root after `bench/inbox_probe_lengths.py --weights-dir .probe_weights/inbox ...` saved seed 0.
"""

import json
import time

import torch

from devlearn.agents.developmental import probe
from devlearn.agents.developmental.inbox_probe import inbox_scores, probe_agent, triage_windows

torch.set_num_threads(2)
agent = probe_agent("hybrid", 1000, 32, 0, {"memory.write": "surprise"})
agent.net.load_state_dict(torch.load(".probe_weights/inbox/inbox-hybrid-surprise-0.pt", weights_only=True))
t0 = time.time()
losses = probe.train_supervised(
    agent, [1000] * 20, lambda n, u: triage_windows(agent, n, 16, 7_000_000 + u), 1e-3, 0.5, 5, "stage 1000"
)
print("train seconds", round(time.time() - t0), "losses", [round(x, 3) for x in losses], flush=True)
torch.save(agent.net.state_dict(), ".probe_weights/inbox/inbox-hybrid-surprise-0-stage1000.pt")
out = {}
with torch.no_grad():
    agent.net.eval()
    for n in (100, 1000, 10000):
        t = time.time()
        out[n] = inbox_scores(agent, n, 16, 10_000_019, "train")
        print(n, round(time.time() - t), json.dumps(out[n]), flush=True)
