"""The lake on s3:// through storage options, against a local S3 API (moto) on loopback."""

import datetime as dt

import boto3
import polars as pl
import pytest
from dagster_deltalake import S3Config
from moto.server import ThreadedMotoServer

from stock_assets.lake import Lake, month_column
from stock_assets.resources.lake import LakeResource
from stock_assets.tables import Table

BARS = Table("silver/bars", "test table")
EVENTS = Table("bronze/events", "test table", date_column=None)


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket="stock-lake")
    yield endpoint
    server.stop()


def test_partition_overwrite_range_read_and_offsets_on_s3(s3_endpoint):
    lake = LakeResource(
        root="s3://stock-lake/prod",
        storage=S3Config(
            endpoint=s3_endpoint, access_key_id="test", secret_access_key="test", region="us-east-1"
        ),
        extra_storage_options={"allow_http": "true"},
    )
    days = [dt.date(2010, 1, 28), dt.date(2010, 1, 29), dt.date(2010, 2, 1)]
    for price, day in enumerate(days):
        bars = pl.DataFrame({"ticker": ["A", "B"], "date": [day, day], "close": [1.0 + price] * 2})
        lake.overwrite_dates(BARS, bars.with_columns(month_column()), day, day)
    assert lake.read_dates(BARS, days[0], days[-1]).height == 6
    assert lake.read_dates(BARS, days[1], days[1])["close"].to_list() == [2.0, 2.0]

    rows = pl.DataFrame(
        {
            "kafka_partition": pl.Series([0, 0], dtype=pl.Int32),
            "kafka_offset": pl.Series([40, 41], dtype=pl.Int64),
            "month": ["2010-01", "2010-01"],
        }
    )
    assert lake.append_kafka(EVENTS, rows, "events", {0: 41}).rows_written == 2
    assert lake.append_kafka(EVENTS, rows, "events", {0: 41}).rows_written == 0
    assert lake.transaction_versions(EVENTS, ["events-0", "events-1"]) == {
        "events-0": 41,
        "events-1": None,
    }
    assert lake.uri(EVENTS) == "s3://stock-lake/prod/bronze/events"

    # the plain Lake (API, app) reads the same tables with the resource's storage options
    plain = Lake(lake.root, lake.storage_options)
    assert (
        plain.read_dates(BARS, days[0], days[-1])
        .sort("date", "ticker")
        .equals(lake.read_dates(BARS, days[0], days[-1]).sort("date", "ticker"))
    )
