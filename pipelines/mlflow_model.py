"""The registered model's code (MLflow models-from-code): `predict` returns synthetic rows from the Sampler.

    model = mlflow.pyfunc.load_model("models:/synthlake-adult@champion")
    rows = model.predict(pd.DataFrame({"rows": [1000], "seed": [7]}))
    more = model.predict(pd.DataFrame({"rows": [1000], "seed": [7]}))  # identifiers 1000..1999
    again = model.predict(pd.DataFrame({"rows": [1000], "seed": [7], "offset": [0]}))  # == rows
    older = model.predict(pd.DataFrame({"rows": [100], "where": ["age >= 60"]}))  # every row meets it
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SyntheticTableModel(PythonModel):
    def load_context(self, context):
        from synthlake.generators import load_sampler

        self.sampler = load_sampler(context.artifacts["generator"])
        self.next_offset = 0  # where the next request's generated identifiers start, unless it says

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One request row: `rows` to generate, an optional `seed` (default 0), an optional `offset`, the
        first generated identifier (default: one past the previous request's last, so they keep increasing),
        and an optional `where`, a condition every row meets (synthlake.conditions). The rows are deterministic
        for (rows, seed, offset, where)."""
        from synthlake.conditions import Conditions
        from synthlake.generators.base import sample_conditional, to_frame

        if "rows" not in model_input.columns or len(model_input) != 1:
            raise ValueError("predict expects one row with a `rows` column (and optionally `seed`, `offset`)")
        request = model_input.iloc[0]
        rows = int(request["rows"])
        seed = int(request["seed"]) if "seed" in model_input.columns else 0
        offset = int(request["offset"]) if "offset" in model_input.columns else self.next_offset
        where = request["where"] if "where" in model_input.columns and isinstance(request["where"], str) else None
        table = sample_conditional(self.sampler, rows, seed, offset, Conditions(where=where or None))
        self.next_offset = offset + rows
        return to_frame(table)


mlflow.models.set_model(SyntheticTableModel())
