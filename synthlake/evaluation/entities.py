"""Privacy at the entity level for related tables: an entity is a root row with all of its descendants (a storm
and its observations), the unit that related tables protect (synthlake.related_frames).

- entity_exact_match_share (with the next, from entity_match_shares): share of synthetic entities identical to a
  training one: the root row's learned values and, in every other table, the same multiset of rows over its
  learned columns (0 ideal).
- entity_unique_match_share: share of synthetic entities identical to a training entity that no other real entity
  (training or held out) equals: a copy that singles out one entity (0 ideal). Identical real entities are common
  where the columns are few and coarse (nycflights: planes of one model and year without flights), and a copy
  of one of them tells of no single entity.
- entity_dcr_share: dcr_share (synthlake.evaluation.privacy) over entity profiles, each entity one row (its root
  row's learned columns; per other table its row count and the mean of each numeric column): the share of
  synthetic entities closer to a training entity than to a holdout entity, equal numbers of both, 0.5 ideal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthlake.evaluation.base import row_hashes
from synthlake.evaluation.privacy import dcr_share, record_distances
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.related_frames import ENTITY, with_entities
from synthlake.relations import Relations


def entity_profiles(relations: Relations, tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, TableMetadata]:
    """One row per root row (indexed by its key): its learned columns, and per other table `<table>.rows` and
    `<table>.<column>.mean` of each numeric column; with the metadata that compares them."""
    tables = with_entities(tables, relations)
    root = relations.root
    frame = tables[root.name].set_index(ENTITY)[[c.name for c in root.learned]]
    specs = list(root.learned)
    for name in relations.parents_first()[1:]:
        table = relations.table(name)
        groups = tables[name].groupby(ENTITY)
        frame[f"{name}.rows"] = groups.size().reindex(frame.index).fillna(0)
        specs.append(ColumnSpec(name=f"{name}.rows", kind=ColumnKind.NUMERIC, integer=True))
        for c in table.learned:
            if c.kind == ColumnKind.NUMERIC:
                frame[f"{name}.{c.name}.mean"] = groups[c.name].mean().reindex(frame.index)
                specs.append(ColumnSpec(name=f"{name}.{c.name}.mean", kind=ColumnKind.NUMERIC))
    return frame, TableMetadata(columns=specs)


def entity_hashes(relations: Relations, tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Each entity's content as one hash (indexed by the root key): its root row's learned values and, per other
    table, its rows' hashes over the learned columns, sorted (the keys and the rows' order left out)."""
    tables = with_entities(tables, relations)
    root = relations.root
    parts = [pd.Series(row_hashes(tables[root.name], root.learned), index=tables[root.name][ENTITY]).astype(str)]
    for name in relations.parents_first()[1:]:
        rows = tables[name]
        hashes = pd.Series(row_hashes(rows, relations.table(name).learned), index=rows.index).astype(str)
        joined = hashes.groupby(rows[ENTITY]).agg(lambda h: ",".join(sorted(h)))
        parts.append(f"{name}:" + joined.reindex(parts[0].index).fillna(""))
    content = pd.concat(parts, axis=1).astype(str).agg("|".join, axis=1)
    return pd.Series(pd.util.hash_array(content.to_numpy(dtype=object)), index=content.index)


def entity_match_shares(relations: Relations, train: dict[str, pd.DataFrame], holdout: dict[str, pd.DataFrame],
                        synthetic: dict[str, pd.DataFrame]) -> dict[str, float]:
    """entity_exact_match_share and entity_unique_match_share (nan without synthetic entities), each side's
    entities hashed once."""
    synthetic_hashes, train_hashes = entity_hashes(relations, synthetic), entity_hashes(relations, train)
    counts = pd.concat([train_hashes, entity_hashes(relations, holdout)]).value_counts()
    unique = train_hashes[train_hashes.map(counts) == 1]  # the only real entity of its content
    return {"entity_exact_match_share": _share_in(synthetic_hashes, train_hashes),
            "entity_unique_match_share": _share_in(synthetic_hashes, unique)}


def _share_in(synthetic_hashes: pd.Series, real_hashes: pd.Series) -> float:
    if synthetic_hashes.empty:
        return float("nan")
    return float(np.isin(synthetic_hashes.to_numpy(), real_hashes.to_numpy()).mean())


def entity_dcr_share(relations: Relations, train: dict[str, pd.DataFrame], holdout: dict[str, pd.DataFrame],
                     synthetic: dict[str, pd.DataFrame], seed: int = 0) -> float:
    """dcr_share over entity profiles; nan without holdout or synthetic entities."""
    profiles = [entity_profiles(relations, tables) for tables in (train, holdout, synthetic)]
    (train_rows, metadata), (holdout_rows, _), (synthetic_rows, _) = profiles
    if min(len(train_rows), len(holdout_rows), len(synthetic_rows)) == 0:
        return float("nan")
    d = record_distances(train_rows.reset_index(drop=True), synthetic_rows.reset_index(drop=True),
                         holdout_rows.reset_index(drop=True), metadata, seed)
    share = dcr_share(d.to_train, d.to_holdout)
    return float("nan") if share is None else share
