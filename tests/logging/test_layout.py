"""TensorBoard: the Custom Scalars layout opens on the learning curves; HParams adds no duplicate scalars."""

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from devlearn.logging.layout import LAYOUT, write_hparams, write_layout

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_layout_first_screen_is_the_learning_curves_and_hparams_add_no_scalars(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    write_layout(writer)
    writer.add_scalar("eval/train/return", 0.5, 100)
    write_hparams(writer, {"agent": "ppo", "seed": 0}, ["eval/train/return"])
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert events.Tags()["scalars"] == ["eval/train/return"]  # no hparam/* copy at step 0
    (record,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(record.tensor_proto.string_val[0])
    first = layout.category[0]
    assert first.title == "1. learning curves"
    charts = {c.title: list(c.multiline.tag) for c in first.chart}
    assert "rollout/return" in charts["return (last 100 episodes)"]
    assert charts["catastrophe rate"] == ["rollout/catastrophe_rate"]
    assert "world_model/acc_changed" in charts["world model: changed-cell accuracy"]
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")


def test_every_layout_tag_is_documented_in_the_readme():
    tags = {tag for charts in LAYOUT.values() for _, (_, chart_tags) in charts.items() for tag in chart_tags}
    missing = sorted(t for t in tags if f"`{t}`" not in README and f"`{t.split('/', 1)[1]}`" not in README)
    assert not missing, missing
