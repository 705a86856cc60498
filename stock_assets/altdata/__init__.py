"""Alternative data on schedules: macro indicators, news sentiment, earnings, PIT universe.

Every source is a ConfigurableResource (``resources.py``) that reads real data shipped in PyPI
packages by default and a production feed with the same output schema when configured, so
switching is configuration. Assets validate each raw record, store the good ones in Delta and
the rejected ones in a quarantine table with the reason (never silently dropped).
"""

ALTDATA_GROUP = "altdata"
