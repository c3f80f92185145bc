"""Score the network of inbox_probe-stage1000-hybrid-seed0.py on 4 inboxes of 100,000 e-mails (one thread)."""

import json
import time

import torch

from devlearn.agents.developmental.inbox_probe import inbox_scores, probe_agent

torch.set_num_threads(1)
agent = probe_agent("hybrid", 1000, 32, 0, {"memory.write": "surprise"})
agent.net.load_state_dict(torch.load(".probe_weights/inbox/inbox-hybrid-surprise-0-stage1000.pt", weights_only=True))
agent.net.eval()
t = time.time()
with torch.no_grad():
    got = inbox_scores(agent, 100_000, 4, 10_000_019, "train")
print(100000, round(time.time() - t), json.dumps(got), flush=True)
