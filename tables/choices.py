"""The closed choices of the read paths' options, as ``Literal`` types.

The functions that take these options check them at run time (:func:`udfs.errors.check_choice`,
whose message lists the choices), and the command line builds its option choices from the same
types. This module imports nothing heavy, so the command line can use it while it starts.
"""

from __future__ import annotations

from typing import Literal

from udfs.errors import choices

#: How ``search`` finds its candidates (see :mod:`tables.search`).
SearchCandidates = Literal["auto", "exact", "pooled", "frames", "ann"]
#: How ``find_moments`` finds its candidates (see :mod:`tables.moments`).
MomentCandidates = Literal["auto", "exact", "frames"]
#: Text search modes (see :mod:`tables.text_search`).
TextMode = Literal["auto", "fts", "semantic", "hybrid"]
#: Where the clip reader takes a video's bytes from (see :mod:`tables.clip_dataset`).
ClipSource = Literal["auto", "blob", "uri"]
#: Vector index types ``vw index`` can build (see :mod:`tables.indexes`).
VectorIndexType = Literal["IVF_FLAT", "IVF_SQ", "IVF_PQ", "IVF_HNSW_SQ", "IVF_HNSW_PQ", "IVF_HNSW_FLAT", "IVF_RQ"]

SEARCH_CANDIDATES = choices(SearchCandidates)
MOMENT_CANDIDATES = choices(MomentCandidates)
TEXT_MODES = choices(TextMode)
CLIP_SOURCES = choices(ClipSource)
VECTOR_INDEX_TYPES = choices(VectorIndexType)
