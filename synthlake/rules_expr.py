"""The expression language of derived columns: small, typed, parsed with `ast` and never evaluated by Python.

    total = a + b                        "a + b"
    arrival_year = year(arrival_date)    "year(arrival_date)"
    nights = (checkout - checkin) // 86400
    net = col("gross-amount") - fee      col("...") names a column whose name is not a Python identifier

What an expression may hold: numbers, column names (numeric or datetime columns), + - * / // %, a unary minus
or plus, parentheses and these functions:

    year(t), month(t), day(t), weekday(t) (Monday = 0), hour(t), fractional_year(t)   of a datetime, in its zone
    round(x), round(x, digits)           half away from zero, as SQL's round (digits: an integer literal)
    abs(x), min(a, b, ...), max(a, b, ...)

Types: a datetime minus a datetime is a number of seconds, a datetime plus or minus a number (of seconds) is a
datetime, everything else works on numbers. A null anywhere gives null; a division by zero gives null.
Inside, numbers are float64 arrays and datetimes microseconds since the epoch (UTC) with their time zone.
"""

from __future__ import annotations

import ast
import json
import keyword
from dataclasses import dataclass

import numpy as np
import pandas as pd

NUMBER, DATETIME = "number", "datetime"
MAX_LENGTH = 2000  # characters: deep nesting would exhaust the parser's recursion long before this
_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
              ast.FloorDiv: np.floor_divide, ast.Mod: np.mod}
_DATE_PARTS = ("year", "month", "day", "weekday", "hour", "fractional_year")
_FUNCTIONS = (*_DATE_PARTS, "round", "abs", "min", "max")


@dataclass(frozen=True)
class Stamps:
    """Datetimes while an expression is evaluated: microseconds since the epoch (NaN: null), their time zone."""

    micros: np.ndarray
    tz: str | None


class Expression:
    """One parsed expression: `columns` it reads, `kind(kinds)` checks its types, `evaluate(frame)` computes it."""

    def __init__(self, text: str):
        if len(text) > MAX_LENGTH:
            raise ValueError(f"expression longer than {MAX_LENGTH} characters")
        try:
            self._tree = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"expression {text!r} does not parse: {exc.msg}") from None
        self.text = text
        self.columns: list[str] = []
        self._collect(self._tree)

    def _collect(self, node: ast.AST) -> None:
        """Checks that every node is allowed and records the columns, in the order they appear."""
        name = _column_name(node)
        if name is not None:
            self.columns += [name] if name not in self.columns else []
        elif isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise ValueError(f"expression {self.text!r}: only numbers are allowed as constants, not {node.value!r}")
        elif isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            self._collect(node.left)
            self._collect(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._collect(node.operand)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            _check_call(node, self.text)
            for arg in node.args:
                self._collect(arg)
        else:
            raise ValueError(f"expression {self.text!r}: {ast.unparse(node)!r} is not allowed (numbers, columns, "
                             f"+ - * / // %, and the functions {list(_FUNCTIONS)})")

    def kind(self, kinds: dict[str, str]) -> str:
        """NUMBER or DATETIME, given each column's; a ValueError says which part mixes the types wrongly."""
        return _kind(self._tree, kinds, self.text)

    def evaluate(self, frame: pd.DataFrame) -> np.ndarray | Stamps:
        """Numbers (float64, NaN for null) or Stamps, one value per row of `frame`."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return _evaluate(self._tree, frame)


def column_ref(name: str) -> str:
    """A column as an expression names it: bare if it is a Python identifier (and no keyword), else col("...")."""
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    return f"col({json.dumps(name)})"


def _column_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "col"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return node.args[0].value
    return None


def _check_call(node: ast.Call, text: str) -> None:
    name, count = node.func.id, len(node.args)
    expected = {"round": (1, 2), "min": (2, 99), "max": (2, 99)}.get(name, (1, 1))
    if node.keywords or not expected[0] <= count <= expected[1]:
        raise ValueError(f"expression {text!r}: {name}() takes {expected[0]} to {expected[1]} positional arguments"
                         if expected[0] != expected[1] else f"expression {text!r}: {name}() takes one argument")
    if name == "round" and count == 2 and not (isinstance(node.args[1], ast.Constant)
                                                and type(node.args[1].value) is int):
        raise ValueError(f"expression {text!r}: round()'s digits must be an integer literal")


def _kind(node: ast.AST, kinds: dict[str, str], text: str) -> str:
    name = _column_name(node)
    if name is not None:
        if name not in kinds:
            raise ValueError(f"expression {text!r}: column {name!r} is not a numeric or datetime column")
        return kinds[name]
    if isinstance(node, ast.Constant):
        return NUMBER
    if isinstance(node, ast.UnaryOp):
        return _expect(node.operand, NUMBER, kinds, text)
    if isinstance(node, ast.BinOp):
        return _binary_kind(node, _kind(node.left, kinds, text), _kind(node.right, kinds, text), text)
    return _call_kind(node, kinds, text)


def _binary_kind(node: ast.BinOp, left: str, right: str, text: str) -> str:
    if left == right == NUMBER:
        return NUMBER
    if isinstance(node.op, ast.Sub) and left == right == DATETIME:
        return NUMBER
    if isinstance(node.op, ast.Add | ast.Sub) and left == DATETIME and right == NUMBER:
        return DATETIME
    if isinstance(node.op, ast.Add) and left == NUMBER and right == DATETIME:
        return DATETIME
    raise ValueError(f"expression {text!r}: {ast.unparse(node)!r} combines a {left} and a {right} "
                     "(datetimes: t - t, t + seconds, t - seconds)")


def _call_kind(node: ast.Call, kinds: dict[str, str], text: str) -> str:
    name = node.func.id
    if name in _DATE_PARTS:
        _expect(node.args[0], DATETIME, kinds, text)
        return NUMBER
    if name in ("min", "max"):
        found = {_kind(arg, kinds, text) for arg in node.args}
        if len(found) > 1:
            raise ValueError(f"expression {text!r}: {name}() mixes numbers and datetimes")
        return found.pop()
    return _expect(node.args[0], NUMBER, kinds, text)


def _expect(node: ast.AST, kind: str, kinds: dict[str, str], text: str) -> str:
    found = _kind(node, kinds, text)
    if found != kind:
        raise ValueError(f"expression {text!r}: {ast.unparse(node)!r} is a {found}, a {kind} is needed there")
    return found


def _evaluate(node: ast.AST, frame: pd.DataFrame) -> np.ndarray | Stamps:
    name = _column_name(node)
    if name is not None:
        return _column(frame[name])
    if isinstance(node, ast.Constant):
        return np.full(len(frame), float(node.value))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, frame)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        return _binary(node.op, _evaluate(node.left, frame), _evaluate(node.right, frame))
    args = [_evaluate(arg, frame) for arg in node.args]
    return _call(node.func.id, args, node.args)


def _column(series: pd.Series) -> np.ndarray | Stamps:
    if pd.api.types.is_datetime64_any_dtype(series):
        return Stamps(micros(series), str(series.dt.tz) if series.dt.tz is not None else None)
    return pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan)


def _binary(op: ast.operator, left: np.ndarray | Stamps, right: np.ndarray | Stamps) -> np.ndarray | Stamps:
    if isinstance(left, Stamps) and isinstance(right, Stamps):  # t - t: seconds
        return (left.micros - right.micros) / 1e6
    if isinstance(left, Stamps):  # t +- seconds
        return Stamps(_OPERATORS[type(op)](left.micros, np.round(right * 1e6)), left.tz)
    if isinstance(right, Stamps):  # seconds + t
        return Stamps(right.micros + np.round(left * 1e6), right.tz)
    return _OPERATORS[type(op)](left, right)


def _call(name: str, args: list, nodes: list[ast.AST]) -> np.ndarray | Stamps:
    if name in _DATE_PARTS:
        return _date_part(name, args[0])
    if name == "round":
        digits = nodes[1].value if len(nodes) == 2 else 0
        scale = 10.0 ** digits
        return np.sign(args[0]) * np.floor(np.abs(args[0]) * scale + 0.5) / scale
    if name == "abs":
        return np.abs(args[0])
    pick = np.minimum if name == "min" else np.maximum  # NaN-propagating: a null argument gives null
    if isinstance(args[0], Stamps):
        return Stamps(_reduce(pick, [a.micros for a in args]), args[0].tz)
    return _reduce(pick, args)


def _reduce(pick, arrays: list[np.ndarray]) -> np.ndarray:
    result = arrays[0]
    for array in arrays[1:]:
        result = pick(result, array)
    return result


def _date_part(name: str, stamps: Stamps) -> np.ndarray:
    """Calendar fields in the datetimes' own zone (naive ones: as written)."""
    t = to_datetimes(stamps.micros, stamps.tz).dt
    if name == "fractional_year":
        seconds = t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
        part = t.year + (t.dayofyear - 1 + seconds / 86400) / (365 + t.is_leap_year.astype(float))
    else:
        part = getattr(t, name)
    return pd.to_numeric(part).to_numpy(dtype=float, na_value=np.nan)


def micros(series: pd.Series) -> np.ndarray:
    """Datetimes (naive ones read as UTC) as microseconds since the epoch, float64 (exact until the year 2255),
    NaN for null; nanoseconds are rounded away, as Spark and Parquet keep microseconds."""
    stamps = pd.to_datetime(series, utc=True)
    ns = stamps.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
    return np.where(stamps.isna().to_numpy(), np.nan, (ns + 500) // 1000).astype(float)


def to_datetimes(values: np.ndarray, tz: str | None) -> pd.Series:
    """Microseconds since the epoch (NaN and inf: null) as datetimes in zone `tz` (None: naive, UTC's clock)."""
    missing = ~np.isfinite(values)
    # whole microseconds as integers, nulls masked: to_datetime of a float NaN is not reliable (transforms.py)
    stamps = pd.Series(pd.to_datetime(np.where(missing, 0, np.round(values)).astype(np.int64), unit="us", utc=True))
    stamps = stamps.where(~missing)
    return stamps.dt.tz_convert(tz) if tz else stamps.dt.tz_localize(None)
