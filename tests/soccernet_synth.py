"""Seeded synthetic SoccerNet games: annotations, noisy predictions of two models, and both as
official files (``Labels-v2.json`` / ``results_spotting.json``) and as ``events`` rows.

A game is ``<league>/<season>/<game>`` and each half is one video ``<game path>/<half>``, as the
SoccerNet import stores them (one ``videos`` row per half, ``time_s`` within the half).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tables.events import GROUND_TRUTH, Event

CLASSES_USED = ["Goal", "Corner", "Foul", "Throw-in", "Yellow card", "Substitution", "Offside", "Clearance"]
#: A class with ground truth that no model predicts.
UNPREDICTED = "Offside"
#: A class the models predict that never occurs in the ground truth.
NEVER_TRUE = "Red card"
MODELS = ("qwen", "llava")
HALF_MS = 2_900_000  # a little over 48 minutes: stoppage time included


@dataclass
class Annotation:
    """One ground-truth event."""

    half: int
    position_ms: int
    label: str
    visible: bool
    team: str


@dataclass
class Prediction:
    """One predicted event."""

    half: int
    position_ms: int
    label: str
    confidence: float


@dataclass
class SynthGame:
    """One game: its path, annotations and each model's predictions."""

    path: str
    annotations: list[Annotation] = field(default_factory=list)
    predictions: dict[str, list[Prediction]] = field(default_factory=dict)

    def video_id(self, half: int) -> str:
        """The video of one half."""
        return f"{self.path}/{half}"


def _game_time(half: int, ms: int) -> str:
    return f"{half} - {ms // 60000:02d}:{(ms // 1000) % 60:02d}"


def _noisy(rng: random.Random, ms: int) -> int:
    """A predicted position: mostly close, sometimes a few seconds off, rarely far."""
    r = rng.random()
    if r < 0.6:
        off = rng.gauss(0, 700)
    elif r < 0.85:
        off = rng.gauss(0, 5000)
    else:
        off = rng.uniform(-40000, 40000)
    return min(max(0, ms + int(off)), HALF_MS)


def synth_games(seed: int, n_games: int = 3) -> list[SynthGame]:
    """``n_games`` games with both halves, several classes and two noisy models."""
    rng = random.Random(seed)
    games = []
    for g in range(n_games):
        game = SynthGame(f"league-{seed}/2020-2021/2020-10-{g + 10:02d} - Home {g} - {seed} Away",
                         predictions={m: [] for m in MODELS})
        for half in (1, 2):
            for label in CLASSES_USED:
                # distinct half-second cells: one annotation per cell and class, as in real labels
                cells = rng.sample(range(0, HALF_MS // 500), rng.randint(1, 7))
                for cell in cells:
                    ms = cell * 500 + rng.randint(0, 499)
                    team = rng.choice(["home", "away"])
                    game.annotations.append(Annotation(half, ms, label, rng.random() < 0.8, team))
                    if label == UNPREDICTED:
                        continue
                    for model, hit_rate in zip(MODELS, (0.75, 0.6), strict=True):
                        if rng.random() < hit_rate:
                            conf = round(min(1.0, max(0.0, rng.gauss(0.65, 0.2))), 4)
                            game.predictions[model].append(Prediction(half, _noisy(rng, ms), label, conf))
            for model in MODELS:
                for _ in range(rng.randint(2, 8)):  # false alarms, some of a class that never happens
                    label = rng.choice([c for c in CLASSES_USED if c != UNPREDICTED] + [NEVER_TRUE])
                    conf = round(min(1.0, max(0.0, rng.gauss(0.4, 0.2))), 4)
                    game.predictions[model].append(Prediction(half, rng.randint(0, HALF_MS), label, conf))
                # a second prediction of one class in the same half-second cell
                first = game.predictions[model][-1]
                offset = first.position_ms % 500
                game.predictions[model].append(Prediction(first.half, first.position_ms - offset + (499 - offset),
                                                          first.label, round(rng.random(), 4)))
        for model, predictions in game.predictions.items():
            unique = {(p.half, p.position_ms, p.label): p for p in predictions}  # one event per key
            game.predictions[model] = list(unique.values())
        games.append(game)
    return games


def write_labels(root: Path, games: list[SynthGame]) -> Path:
    """``<root>/<game>/Labels-v2.json`` for every game; returns ``root``."""
    for game in games:
        folder = root / game.path
        folder.mkdir(parents=True, exist_ok=True)
        annotations = [{"gameTime": _game_time(a.half, a.position_ms), "label": a.label,
                        "position": str(a.position_ms), "team": a.team,
                        "visibility": "visible" if a.visible else "not shown"} for a in game.annotations]
        (folder / "Labels-v2.json").write_text(json.dumps({"UrlLocal": game.path, "annotations": annotations}))
    return root


def write_predictions(root: Path, game_predictions: dict[str, list[Prediction]]) -> Path:
    """``<root>/<game>/results_spotting.json`` per game path; returns ``root``.

    Predictions are written in ascending confidence: where two fall in one half-second cell of a
    class, the official script keeps the last one, i.e. the highest, as the warehouse does.
    """
    for path, predictions in game_predictions.items():
        folder = root / path
        folder.mkdir(parents=True, exist_ok=True)
        items = [{"gameTime": _game_time(p.half, p.position_ms), "label": p.label, "position": str(p.position_ms),
                  "half": str(p.half), "confidence": str(p.confidence)}
                 for p in sorted(predictions, key=lambda p: p.confidence)]
        (folder / "results_spotting.json").write_text(json.dumps({"UrlLocal": path, "predictions": items}))
    return root


def events_of(games: list[SynthGame]) -> list[Event]:
    """Ground truth and predictions as ``events`` rows (one video per half)."""
    events = []
    for game in games:
        for a in game.annotations:
            events.append(Event(
                video_id=game.video_id(a.half), model=GROUND_TRUTH, time_s=a.position_ms / 1000, label=a.label,
                team=a.team, metadata={"gameTime": _game_time(a.half, a.position_ms), "team": a.team,
                                       "visibility": "visible" if a.visible else "not shown",
                                       "game": game.path, "half": a.half}))
        for model, predictions in game.predictions.items():
            for p in predictions:
                events.append(Event(video_id=game.video_id(p.half), model=model, time_s=p.position_ms / 1000,
                                    label=p.label, confidence=p.confidence))
    return events
