"""The registered model's code (MLflow models-from-code): `predict` returns synthetic rows.

    model = mlflow.pyfunc.load_model("models:/synthlake-adult@champion")
    rows = model.predict(pd.DataFrame({"rows": [1000], "seed": [7]}))
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class SyntheticTableModel(PythonModel):
    def load_context(self, context):
        from synthlake.generators import Generator

        self.generator = Generator.load(context.artifacts["generator"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One request row: `rows` to generate and an optional `seed` (default 0)."""
        if "rows" not in model_input.columns or len(model_input) != 1:
            raise ValueError("predict expects one row with a `rows` column (and optionally `seed`)")
        request = model_input.iloc[0]
        seed = int(request["seed"]) if "seed" in model_input.columns else 0
        return self.generator.sample(int(request["rows"]), seed=seed)


mlflow.models.set_model(SyntheticTableModel())
