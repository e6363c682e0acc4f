"""Dataset adapters: register a dataset's clips from its own annotation files.

``vw ingest --format NAME PATH`` reads MSR-VTT, VATEX, WebVid, Panda-70M, LLaVA-Video-178K
and SoccerNet annotations (one module per format, each documenting its file layout, its
``video_id`` rule and where it looks for the video files) and registers one ``videos`` row
per clip with ``source``, ``split``, ``caption``, ``captions``, ``category`` (when the
dataset has one) and source-specific extras in ``metadata``. SoccerNet annotations also go
to the ``events`` table as ground truth. :mod:`tables.datasets.pipeline` runs the steps,
:mod:`tables.datasets.split` assigns splits.
"""

from tables.datasets.pipeline import FORMATS, DatasetOptions, DatasetReport, ingest_dataset, read_dataset

__all__ = ["FORMATS", "DatasetOptions", "DatasetReport", "ingest_dataset", "read_dataset"]
