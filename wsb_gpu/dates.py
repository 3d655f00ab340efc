"""Day numbers: dates as days since 1970-01-01, the integer key of every stock-day.

A day number joins and sorts the same way in pandas and cuDF (dates do not), so the stages
that match posts to trading days and the fitted families key stock-days by it. The
conversions live here, once:

* :func:`day_number` -- a date or datetime column (pandas, cuDF or Dask) to int64 day numbers;
* :func:`to_days` -- the same for a pandas series, as a NumPy array;
* :func:`date_of_day` and :func:`year_of` -- day numbers back to ``datetime64[s]`` dates, and
  to calendar years;
* :func:`epoch_day` and :func:`iso_day` -- one :class:`datetime.date` to its day number and
  one day number to its ISO date.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from wsb_gpu.backend import Column

EPOCH = dt.date(1970, 1, 1)
SECONDS_PER_DAY = 86400


def day_number(dates: Column) -> Column:
    """Days since 1970-01-01 (int64) of a date or datetime column, pandas or cuDF.

    >>> import pandas as pd
    >>> day_number(pd.Series(pd.to_datetime(["1970-01-02", "2020-01-01"]))).tolist()
    [1, 18262]
    """
    return dates.astype("datetime64[s]").astype("int64") // SECONDS_PER_DAY


def to_days(dates: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 (int64) of a pandas ``datetime64`` series, as a NumPy array.

    >>> import pandas as pd
    >>> to_days(pd.Series(pd.to_datetime(["1970-01-02"]))).tolist()
    [1]
    """
    return np.asarray(day_number(dates), dtype=np.int64)


def date_of_day(days: Any) -> Any:
    """``datetime64[s]`` dates of day numbers (a pandas, cuDF or Dask series).

    >>> import pandas as pd
    >>> date_of_day(pd.Series([0, 18322])).dt.strftime("%Y-%m-%d").tolist()
    ['1970-01-01', '2020-03-01']
    """
    return (days.astype("int64") * SECONDS_PER_DAY).astype("datetime64[s]")


def year_of(days: Any) -> Any:
    """Calendar year (int64) of day numbers, for pandas, cuDF or Dask series.

    >>> import pandas as pd
    >>> year_of(pd.Series([0, 18322])).tolist()
    [1970, 2020]
    """
    return date_of_day(days).dt.year.astype("int64")


def epoch_day(day: dt.date) -> int:
    """The day number of one date.

    >>> epoch_day(dt.date(1970, 1, 2))
    1
    """
    return (day - EPOCH).days


def iso_day(day: int) -> str:
    """ISO date of a day number.

    >>> iso_day(0), iso_day(18262)
    ('1970-01-01', '2020-01-01')
    """
    return (EPOCH + dt.timedelta(days=day)).isoformat()
