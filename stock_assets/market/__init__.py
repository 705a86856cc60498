"""Market data from bronze to silver: daily bars, corporate actions, adjusted bars, quality."""

from stock_assets.market.adjusted import adjusted_daily_bars, adjusted_daily_bars_checks
from stock_assets.market.assets import daily_bars
from stock_assets.market.checks import daily_bars_checks
from stock_assets.market.corporate_actions import corporate_actions, corporate_actions_checks
from stock_assets.market.quality import data_quality

# Built together, in one run per range of trading days: bars, then the events they reveal, then
# the adjusted view and the quality report. Checks on each stop what follows when they fail.
MARKET_SILVER_ASSETS = [daily_bars, corporate_actions, adjusted_daily_bars, data_quality]
MARKET_SILVER_CHECKS = [daily_bars_checks, corporate_actions_checks, adjusted_daily_bars_checks]
