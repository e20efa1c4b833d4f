"""Train the embedded backends on the embedded world with Lightning (CPU-friendly, minutes).

``train_embedded_backends(world_root, out_dir, strength)`` trains the segmentation net (cross-entropy on
trainIds, ignore ``IGNORE_INDEX``) and the generator (L1 + image-gradient L1 on ground-truth labelIds → image), then
evaluates on the world's val split and writes::

    OUT/{strength}/segmentation.pt  resynthesis.pt     # embedded checkpoints (weights_only-loadable)
    OUT/{strength}/metrics.json                        # val mIoU, per-class IoU, generator L1/PSNR, losses
    OUT/{strength}/preview.png                         # rows: image | gt | prediction | resynthesis
    OUT/{strength}/done.json                           # written last: a finished run is not retrained
    OUT/{strength}/lightning/{segmentation,resynthesis}/last.ckpt   # resume points
    OUT/{strength}/lightning/{segmentation,resynthesis}/losses.json # a finished network's loss history

A killed run resumes from ``last.ckpt``; a network already saved is not trained again (its loss history comes
from ``losses.json``); a finished one (``done.json``) returns at once.

The package, by concern: :mod:`~.data` reads a Cityscapes split into tensors, :mod:`~.tasks` holds the two
LightningModules and the resumable fit, :mod:`~.scores` the evaluation (mIoU, PSNR, FS Static entropy, preview),
:mod:`~.train` the entry point.
"""

from reprolib.training.embedded_backends.data import cityscapes_root_of, load_split_tensors
from reprolib.training.embedded_backends.scores import (
    preview_grid,
    resynthesis_scores,
    segmentation_scores,
    static_anomaly_scores,
)
from reprolib.training.embedded_backends.tasks import (
    EmbeddedTask,
    ResynthesisTask,
    SegmentationTask,
    TrainingStopped,
    fit_task,
    gradient_l1,
)
from reprolib.training.embedded_backends.train import DEFAULT_BATCH, DEFAULT_STEPS, train_embedded_backends

__all__ = ["DEFAULT_BATCH", "DEFAULT_STEPS", "EmbeddedTask", "ResynthesisTask", "SegmentationTask", "TrainingStopped",
           "cityscapes_root_of",
           "fit_task", "gradient_l1", "load_split_tensors", "preview_grid", "resynthesis_scores", "segmentation_scores",
           "static_anomaly_scores", "train_embedded_backends"]
