"""Small error tables (the DataFrame layout of corruption_errors) shared by the metrics and report tests."""

from __future__ import annotations

import pandas as pd


def error_table(rows) -> pd.DataFrame:
    """A table with columns corruption, severity, error from (corruption, severity, error) rows."""
    return pd.DataFrame(rows, columns=["corruption", "severity", "error"])


MODEL = error_table([("clean", 0, 10), ("gaussian_noise", 1, 20), ("gaussian_noise", 2, 30), ("fog", 1, 40),
                     ("fog", 2, 50), ("saturate", 1, 60)])
BASE = error_table([("clean", 0, 20), ("gaussian_noise", 1, 40), ("gaussian_noise", 2, 40), ("fog", 1, 50),
                    ("fog", 2, 70), ("saturate", 1, 80)])
