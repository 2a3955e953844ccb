"""The built-in demo: synthetic basketball shots in the schema of the Kobe Bryant shot data.

Everything here is made up by a seeded generator; no real shot is copied. As in the real data,
the development table holds the 2-point shots and the production table the 3-point shots, the
chance of making a shot falls with distance, and a few targets are missing. A model trained on
the development table therefore meets longer shots in production: the data drifts and the
model's calibration degrades.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from core.tables import IngestResult, TableStore

DEV_FILE = "demo_dev.parquet"
PROD_FILE = "demo_prod.parquet"
DEV_NAME = "Demo shots: development, 2-point (synthetic)"
PROD_NAME = "Demo shots: production, 3-point (synthetic)"
TARGET = "shot_made_flag"
SEED = 20_24
N_SHOTS = 12_000  # about 9,000 2-point and 3,000 3-point shots

TEAM_ID = 1610612747
TEAM_NAME = "Los Angeles Lakers"
OPPONENTS = (
    "ATL BKN BOS CHA CHI CLE DAL DEN DET GSW HOU IND LAC MEM MIA MIL MIN NOP NYK OKC ORL PHI PHX POR "
    "SAC SAS TOR UTA WAS"
).split()
ACTIONS = {
    "Jump Shot": (["Jump Shot", "Pullup Jump shot", "Fadeaway Jump Shot", "Turnaround Jump Shot", "Running Jump Shot"],
                  [0.62, 0.1, 0.1, 0.1, 0.08]),
    "Layup": (["Layup Shot", "Driving Layup Shot", "Reverse Layup Shot"], [0.45, 0.4, 0.15]),
    "Dunk": (["Slam Dunk Shot", "Driving Dunk Shot"], [0.6, 0.4]),
    "Tip Shot": (["Tip Shot"], [1.0]),
    "Hook Shot": (["Hook Shot"], [1.0]),
    "Bank Shot": (["Jump Bank Shot"], [1.0]),
}
# Effect of the kind of shot on the log-odds of making it.
SHOT_EFFECT = {"Dunk": 2.2, "Layup": 0.15, "Tip Shot": -0.3, "Hook Shot": 0.1, "Bank Shot": 0.3, "Jump Shot": 0.0}


def generate_shots(n: int = N_SHOTS, seed: int = SEED) -> pd.DataFrame:
    """``n`` synthetic shots, 2- and 3-point, sorted by game and event, with a ``shot_id``."""
    rng = np.random.default_rng(seed)

    # Where the shot is taken from: near the rim, mid-range, or beyond the arc (feet).
    zone = rng.choice(3, size=n, p=[0.35, 0.4, 0.25])
    distance_ft = np.where(
        zone == 0, rng.gamma(1.3, 1.6, n),
        np.where(zone == 1, rng.uniform(6, 22.5, n), rng.normal(25.5, 1.6, n)),
    )
    long_heave = rng.random(n) < 0.004  # a rare desperation shot from far away
    distance_ft = np.where(long_heave, rng.uniform(35, 70, n), distance_ft).clip(0, 80)
    angle = rng.uniform(-np.pi / 2 * 1.05, np.pi / 2 * 1.05, n)  # 0 = straight at the rim
    loc_x = np.round(10 * distance_ft * np.sin(angle)).astype(int)
    loc_y = np.round(10 * distance_ft * np.cos(angle)).astype(int)
    dist10 = np.hypot(loc_x, loc_y)
    corner = (np.abs(loc_x) >= 220) & (loc_y <= 92)
    three = corner | (dist10 >= 237.5)
    shot_distance = np.floor(dist10 / 10).astype(int)

    # Kind of shot, by distance.
    combined = np.full(n, "Jump Shot", dtype=object)
    close = shot_distance < 4
    u = rng.random(n)
    combined[close & (u < 0.5)] = "Layup"
    combined[close & (u >= 0.5) & (u < 0.72)] = "Dunk"
    combined[close & (u >= 0.72) & (u < 0.8)] = "Tip Shot"
    mid = (shot_distance >= 4) & (shot_distance < 12)
    combined[mid & (u < 0.12)] = "Layup"
    combined[mid & (u >= 0.12) & (u < 0.18)] = "Hook Shot"
    combined[mid & (u >= 0.18) & (u < 0.22)] = "Bank Shot"
    action = np.empty(n, dtype=object)
    for kind, (names, weights) in ACTIONS.items():
        mask = combined == kind
        action[mask] = rng.choice(names, size=int(mask.sum()), p=weights)

    # Games, periods and the clock.
    n_games = max(1, n // 25)
    game_of_shot = np.sort(rng.integers(0, n_games, n))
    game_dates = pd.Timestamp("1996-11-03") + pd.to_timedelta(np.sort(rng.integers(0, 365 * 20, n_games)), unit="D")
    playoff_game = (game_dates.month >= 4) & (game_dates.month <= 6) & (rng.random(n_games) < 0.6)
    home = rng.random(n_games) < 0.5
    opponent = rng.choice(OPPONENTS, size=n_games)
    period = rng.choice([1, 2, 3, 4, 5, 6, 7], size=n, p=[0.27, 0.22, 0.27, 0.22, 0.016, 0.003, 0.001])
    minutes_remaining = rng.integers(0, 12, n)
    seconds_remaining = rng.integers(0, 60, n)
    order = np.lexsort((-seconds_remaining, -minutes_remaining, period, game_of_shot))

    # Chance of making the shot: falls with distance, higher for dunks, lower under pressure.
    clutch = (period >= 4) & (minutes_remaining == 0)
    logit = (
        0.55
        - 0.055 * distance_ft
        + np.vectorize(SHOT_EFFECT.get)(combined)
        - 0.25 * clutch
        - 0.1 * playoff_game[game_of_shot]
        + rng.normal(0, 0.35, n)
    )
    made = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    made[rng.random(n) < 0.06] = np.nan  # a few shots whose outcome was not recorded

    season_start = np.where(game_dates.month >= 10, game_dates.year, game_dates.year - 1)
    season = np.array([f"{y}-{(y + 1) % 100:02d}" for y in season_start])
    matchup = np.where(home, np.char.add("LAL vs. ", opponent), np.char.add("LAL @ ", opponent))

    frame = pd.DataFrame({
        "action_type": action,
        "combined_shot_type": combined,
        "game_event_id": 0,
        "game_id": 20_000_000 + 1_000 * (season_start[game_of_shot] - 1996) + game_of_shot,
        "lat": np.round(34.0443 - loc_y / 1000, 4),
        "loc_x": loc_x,
        "loc_y": loc_y,
        "lon": np.round(-118.2698 + loc_x / 1000, 4),
        "minutes_remaining": minutes_remaining,
        "period": period,
        "playoffs": playoff_game[game_of_shot].astype(int),
        "season": season[game_of_shot],
        "seconds_remaining": seconds_remaining,
        "shot_distance": shot_distance,
        TARGET: made,
        "shot_type": np.where(three, "3PT Field Goal", "2PT Field Goal"),
        "shot_zone_area": _zone_area(loc_x, loc_y, shot_distance),
        "shot_zone_basic": _zone_basic(loc_x, loc_y, shot_distance, three, corner),
        "shot_zone_range": _zone_range(shot_distance),
        "team_id": TEAM_ID,
        "team_name": TEAM_NAME,
        "game_date": game_dates[game_of_shot].strftime("%Y-%m-%d"),
        "matchup": matchup[game_of_shot],
        "opponent": opponent[game_of_shot],
    }).iloc[order].reset_index(drop=True)
    frame["game_event_id"] = frame.groupby("game_id").cumcount() * 7 + 2
    frame["shot_id"] = np.arange(1, n + 1)
    return frame


def _zone_area(loc_x: np.ndarray, loc_y: np.ndarray, distance: np.ndarray) -> np.ndarray:
    degrees = np.degrees(np.arctan2(loc_x, loc_y))  # negative = left side of the court
    area = np.select(
        [distance < 8, degrees < -60, degrees < -20, degrees <= 20, degrees <= 60],
        ["Center(C)", "Left Side(L)", "Left Side Center(LC)", "Center(C)", "Right Side Center(RC)"],
        "Right Side(R)",
    )
    return np.where(distance > 40, "Back Court(BC)", area)


def _zone_range(distance: np.ndarray) -> np.ndarray:
    return np.select(
        [distance < 8, distance < 16, distance < 24, distance <= 40],
        ["Less Than 8 ft.", "8-16 ft.", "16-24 ft.", "24+ ft."],
        "Back Court Shot",
    )


def _zone_basic(loc_x, loc_y, distance, three, corner) -> np.ndarray:
    return np.select(
        [distance > 40, three & corner & (loc_x < 0), three & corner, three, distance < 4, np.abs(loc_x) < 80],
        ["Backcourt", "Left Corner 3", "Right Corner 3", "Above the Break 3", "Restricted Area", "In The Paint (Non-RA)"],
        "Mid-Range",
    )


def demo_tables(n: int = N_SHOTS, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(development, production): the 2-point shots and the 3-point shots."""
    shots = generate_shots(n, seed)
    dev = shots[shots["shot_type"] == "2PT Field Goal"].reset_index(drop=True)
    prod = shots[shots["shot_type"] == "3PT Field Goal"].reset_index(drop=True)
    return dev, prod


def write_demo(data_dir: Path, n: int = N_SHOTS, seed: int = SEED) -> tuple[Path, Path]:
    """Write both demo tables into ``data_dir`` (atomically: a complete file or none)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = (data_dir / DEV_FILE, data_dir / PROD_FILE)
    for frame, path in zip(demo_tables(n, seed), paths):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return paths


def ensure_demo(data_dir: Path) -> tuple[Path, Path]:
    """The demo files, written first if either is missing."""
    paths = (Path(data_dir) / DEV_FILE, Path(data_dir) / PROD_FILE)
    if not all(p.is_file() for p in paths):
        return write_demo(data_dir)
    return paths


def store_demo(store: TableStore, data_dir: Path) -> tuple[IngestResult, IngestResult]:
    """Put both demo tables into the table store (writing the files first if missing)."""
    from core.datasets import read_table_file

    dev_path, prod_path = ensure_demo(data_dir)
    # The production table first: the development table, stored last, is the newest, which pages
    # offer first (one trains on it).
    prod = store.add(read_table_file(prod_path), prod_path.name, name=PROD_NAME)
    dev = store.add(read_table_file(dev_path), dev_path.name, name=DEV_NAME)
    return dev, prod
