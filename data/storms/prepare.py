"""Derives the storms demo's two related tables from ../shared/datasets/storms/storms.csv (see README.md):
storms.csv (one row per storm: its key, name and year) and observations.csv (its six-hourly observations, keyed
by the storm, with their time as one timestamp). Run from the repository root: python data/storms/prepare.py"""

from pathlib import Path

import pandas as pd

SOURCE = Path("../shared/datasets/storms/storms.csv")
HERE = Path(__file__).parent

rows = pd.read_csv(SOURCE)
for whole in ("category", "wind", "pressure", "tropicalstorm_force_diameter", "hurricane_force_diameter"):
    rows[whole] = rows[whole].astype("Int64")  # whole numbers, written without ".0" where a column has nulls
rows.insert(0, "storm_id", rows["name"] + "-" + rows["year"].astype(str))
rows.insert(1, "time", pd.to_datetime(rows[["year", "month", "day", "hour"]]).dt.strftime("%Y-%m-%d %H:%M:%S"))
storms = rows[["storm_id", "name", "year"]].drop_duplicates("storm_id")
observations = rows.drop(columns=["name", "year", "month", "day", "hour"])
observations.insert(0, "observation_id", range(len(observations)))
storms.to_csv(HERE / "storms.csv", index=False)
observations.to_csv(HERE / "observations.csv", index=False)
print(f"{len(storms)} storms, {len(observations)} observations")
