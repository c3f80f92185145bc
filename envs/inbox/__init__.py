"""``devlearn/Inbox-v0``: the single env (``env.py``), its batched twin (``vec.py``), the e-mail generator
(``content.py``) and the one ``InboxArgs`` (``args.py``) that checks both constructors' keyword arguments."""

from devlearn.registry import register

register(
    "devlearn/Inbox-v0",
    entry_point="devlearn.envs.inbox.env:InboxEnv",
    vector_entry_point="devlearn.envs.inbox.vec:InboxVecEnv",
    description="Triage e-mail under an instruction shown once at step 0; delete is irreversible.",
)
