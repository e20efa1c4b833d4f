"""Run segmentation + resynthesis + the three uncertainty maps over a dataset once; cache the result.

``precompute(dataset, segmentation, resynthesis, out_root)`` writes a processed split (spec §4.4)::

    OUT_ROOT/<kind>-<seg>-<resyn>-<hash>/original/<stem>.png        RGB at ``size``
                                        semantic/<stem>.png        trainIds (prediction, or the altered GT)
                                        synthesis/<stem>.png       RGB resynthesis
                                        labels*/<stem>.png         0 known / 1 anomaly / 255 ignore
                                        labels_native/<stem>.png   evaluation labels at the source's size
                                        entropy/ logit_distance/ mae_features/<stem>.png   8-bit maps
                                        key.json  done.json

The folder name carries a hash of everything that determines the bytes (backend names and weight
fingerprints, the dataset fingerprint, the parameters), so a second call with the same inputs returns at
once, and a changed input lands in a new folder. Files are written atomically; a killed run resumes
(batches whose stems already have every output are skipped; batches are formed from fixed positions so a
resumed run writes the same bytes as an uninterrupted one); ``done.json`` marks completion.

The package, one module per concern:

* :mod:`~reprolib.precompute.sources` — what ``dataset`` may be (a processed split from the training-data
  generator, a torch Dataset of dicts, or any :class:`PrecomputeSource`) and how each is read;
* :mod:`~reprolib.precompute.cache` — the cache key, its version, the split's folders and completion checks;
* :mod:`~reprolib.precompute.compute` — the compute loop and the writing of each stem's files.
"""

from reprolib.precompute.cache import (
    CACHE_VERSION,
    MAP_DIRS,
    NATIVE_LABEL_DIR,
    cache_key,
    is_complete,
    key_hash,
    native_label_source,
)
from reprolib.precompute.compute import LABEL_SOURCES, find_done, precompute
from reprolib.precompute.sources import (
    DatasetSource,
    GeneratedSplitSource,
    PrecomputeSource,
    RecordedSource,
    SourceItem,
    as_source,
)

__all__ = ["CACHE_VERSION", "LABEL_SOURCES", "MAP_DIRS", "NATIVE_LABEL_DIR", "DatasetSource", "GeneratedSplitSource",
           "PrecomputeSource", "RecordedSource", "SourceItem", "as_source", "cache_key", "find_done", "is_complete", "key_hash",
           "native_label_source", "precompute"]
