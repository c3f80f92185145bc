import json, time, torch
torch.set_num_threads(1)
from devlearn.agents.developmental.inbox_probe import probe_agent, inbox_scores
agent = probe_agent("hybrid", 1000, 32, 0, {"memory.write": "surprise"})
agent.net.load_state_dict(torch.load(".probe_weights/inbox/inbox-hybrid-surprise-0-stage1000.pt", weights_only=True))
agent.net.eval()
t = time.time()
with torch.no_grad():
    got = inbox_scores(agent, 100_000, 4, 10_000_019, "train")
print(100000, round(time.time() - t), json.dumps(got), flush=True)
