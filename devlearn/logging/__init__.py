"""What a run writes for people: ``runlog`` (scalars, progress bar, episode counters) and TensorBoard media
(``media``: videos, transcripts; ``grid_image``: predicted-vs-actual pictures)."""
