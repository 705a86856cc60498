"""The lake on s3:// through storage options, against a local S3 API (moto) on loopback."""

import datetime as dt

import boto3
import polars as pl
import pytest
from dagster_deltalake import S3Config
from moto.server import ThreadedMotoServer

from stock_assets.resources.lake import LakeResource, month_column


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
        lake.overwrite_dates(
            "silver/bars", bars.with_columns(month_column()).to_arrow(), day, day, ["month"]
        )
    assert lake.read_dates("silver/bars", days[0], days[-1]).height == 6
    assert lake.read_dates("silver/bars", days[1], days[1])["close"].to_list() == [2.0, 2.0]

    rows = pl.DataFrame({"x": [1, 2], "month": ["2010-01", "2010-01"]}).to_arrow()
    lake.append("bronze/events", rows, ["month"], {"events-0": 41})
    assert lake.transaction_versions("bronze/events", ["events-0", "events-1"]) == {
        "events-0": 41,
        "events-1": None,
    }
    assert lake.uri("bronze/events") == "s3://stock-lake/prod/bronze/events"
