"""Derives the nycflights13 demo's two related tables from ../shared/datasets/nycflights13 (see README.md): every
plane (planes.csv) and the flights of January 2013 (flights.csv), each keyed by `flight_id` and naming its plane by
`tailnum`. Run from the repository root: python data/nycflights13/prepare.py"""

from pathlib import Path

import pandas as pd

SOURCE = Path("../shared/datasets/nycflights13")
HERE = Path(__file__).parent

planes = pd.read_parquet(SOURCE / "planes.parquet").drop(columns=["speed"])  # speed: 23 of 3,322 known
planes["year"] = planes["year"].astype("Int64")
flights = pd.read_parquet(SOURCE / "flights.parquet")
flights = flights[flights["month"] == 1].reset_index(drop=True)
flights.insert(0, "flight_id", range(len(flights)))
flights["time_hour"] = flights["time_hour"].dt.strftime("%Y-%m-%d %H:%M:%S")  # UTC
for whole in ("dep_delay", "arr_delay", "air_time"):
    flights[whole] = flights[whole].astype("Int64")
flights = flights[["flight_id", "tailnum", "time_hour", "carrier", "origin", "dest", "dep_delay", "arr_delay",
                   "air_time", "distance"]]
planes.to_csv(HERE / "planes.csv", index=False)
flights.to_csv(HERE / "flights.csv", index=False)
print(f"{len(planes)} planes, {len(flights)} flights")
