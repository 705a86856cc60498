"""Real point-in-time inputs beside the bars, shared by the look-ahead tests.

The packaged alternative data (macro releases, the earnings calendar, index membership) parsed
as the silver assets parse it, a few scored news articles for market sentiment, and the
`Context` the features asset would build from them for a range of sessions.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import polars as pl

from stock_assets.gold.assemble import Context
from stock_assets.pit import members_on
from stock_assets.resources.sources import EarningsSource, MacroSource, MembershipSource, today_utc
from stock_assets.silver.earnings_calendar import parse_events
from stock_assets.silver.index_membership import parse_intervals
from stock_assets.silver.macro_indicators import not_observed, parse_observations
from stock_assets.silver.market_sentiment import daily_sentiment
from stock_assets.silver.news_sentiment import parse_articles, score_articles

# (published_at, headline, body): three real-looking articles inside the S&P 500 year
ARTICLES = [
    ("2010/3/1 10:00", "Profits surge", "Record growth and strong demand"),
    ("2010/6/1 10:00", "Losses deepen", "Weak sales"),
    ("2010/8/2 10:00", "Strong gains", "Improved outlook"),
]


class ContextSources(NamedTuple):
    """The silver rows a feature run reads beside the bars."""

    macro: pl.DataFrame  # silver/macro_indicators
    earnings: pl.DataFrame  # silver/earnings_calendar
    intervals: pl.DataFrame  # silver/index_membership
    sentiment: pl.DataFrame  # silver/market_sentiment


def market_sentiment(articles: list[tuple[str, str, str]]) -> pl.DataFrame:
    """silver/market_sentiment rows from ``(published_at, headline, body)`` articles."""
    parsed, _ = parse_articles(
        pl.DataFrame(
            {
                "article_id": [f"a{i}" for i in range(len(articles))],
                "published_at": [a[0] for a in articles],
                "headline": [a[1] for a in articles],
                "body": [a[2] for a in articles],
                "tickers": [None] * len(articles),
                "source": ["test"] * len(articles),
            },
            schema_overrides={"tickers": pl.List(pl.String)},
        ),
        today_utc(),
    )
    return daily_sentiment(score_articles(parsed))


def packaged_context_sources() -> ContextSources:
    """Real alternative data from the packaged sources, as the silver assets would store it."""
    raw = MacroSource().observations()
    macro, _ = parse_observations(raw.filter(~not_observed(raw)), today_utc())
    earnings, _ = parse_events(EarningsSource().events(), today_utc())
    intervals, _ = parse_intervals(MembershipSource().intervals(), today_utc())
    return ContextSources(macro, earnings, intervals, market_sentiment(ARTICLES))


def make_context(
    sources: ContextSources | tuple, start: dt.date, end: dt.date, adjusted: pl.DataFrame
) -> Context:
    """The features asset's `Context` for sessions ``start..end`` of ``adjusted``."""
    macro, earnings, intervals, sentiment = sources
    days = sorted(adjusted.filter(pl.col("date").is_between(start, end))["date"].unique())
    return Context(
        macro=macro.filter(pl.col("known_from") <= end),
        sentiment=sentiment.filter(pl.col("known_from") <= end),
        earnings=earnings,
        universe=members_on(intervals, days),
        first_bars=adjusted.group_by("instrument").agg(pl.col("date").min().alias("first_date")),
    )
