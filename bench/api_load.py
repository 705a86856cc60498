"""Load test of the prediction API as deployed: ``python -m serving`` (uvicorn, uvloop, httptools,
one worker) with API keys, rate limits and metrics on, driven over loopback.

    .venv/bin/python bench/api_load.py                          # builds a small state first
    .venv/bin/python bench/api_load.py --state-dir /path/.state # an existing `make run` state
    .venv/bin/python bench/api_load.py --state-env state.env    # KEY=VALUE lines (delivered.env)

Scenarios: the latest prediction for 1 ticker (rotating over 50) and for 50 tickers, at fixed
rates (open loop: bench/openloop.c, compiled here with gcc; latency counts from each request's
scheduled time, as wrk2 does) and at the maximum (wrk, closed loop); in the same run, a bare
FastAPI endpoint as the denominator and a framework-less ASGI answer as the server's floor;
on-demand prediction from the cached online rows at 500/s and from a cold Feast read. Prints a
Markdown table (docs/SERVING.md keeps the figures) and writes the raw results as JSON with
``--json``; ``--repeat N`` runs the fixed rates N rounds and prints each one's median p99.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PYTHON = sys.executable


# -- the denominators: a bare FastAPI endpoint, and the server's floor ---------------------------
FLOOR_BODY = b'{"status":"ok"}'


def serve_bare(port: int) -> None:
    """``/bare``: a bare FastAPI endpoint (telemetry off, as the service runs FastAPI);
    ``/floor``: a two-message ASGI answer with no framework, what uvicorn itself costs here."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/bare")
    async def bare():
        return {"status": "ok"}

    async def with_floor(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/floor":
            headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": FLOOR_BODY})
            return
        await app(scope, receive, send)

    uvicorn.run(
        with_floor,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# -- state, servers, tools ------------------------------------------------------------------------
def build_state(root: Path) -> dict[str, str]:
    """The test suite's delivered state (40 tickers, champion and challenger), built in ``root``
    with the embedded broker: about two minutes."""
    from stock_assets.bronze.replay import select_bars
    from stock_assets.resources.broker import EmbeddedBroker, ensure_topic
    from stock_assets_tests.delivered import build_delivered

    broker = EmbeddedBroker(root / "broker")
    broker.start()
    try:
        topic = "bench-delivered"
        ensure_topic(broker.bootstrap, topic, 3)
        os.environ["STOCK_MARKET_TOPIC"] = topic
        delivered = build_delivered(
            root / "state", broker.bootstrap, topic, select_bars("sp500_2009")
        )
    finally:
        broker.stop()
    (root / "state.env").write_text("".join(f"{k}={v}\n" for k, v in delivered.env.items()))
    return delivered.env


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.strip().startswith("#")}


def free_port() -> int:
    from stock_assets.resources.broker import free_port as pick

    return pick()


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready:\n{log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    from stock_assets.resources.broker import stop_process_group

    stop_process_group(proc, grace_s=10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_request(port: int, path: str, key: str | None, body: bytes | None = None) -> bytes:
    lines = [f"{'POST' if body else 'GET'} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if key:
        lines.append(f"X-API-Key: {key}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def request_file(folder: Path, name: str, requests: list[bytes]) -> Path:
    path = folder / f"{name}.req"
    path.write_bytes(b"".join(str(len(r)).encode() + b"\n" + r for r in requests))
    return path


# -- the runs -------------------------------------------------------------------------------------
def open_loop(tool: Path, port: int, rate: int, seconds: float, reqs: Path, connections: int):
    args = [
        str(tool),
        "127.0.0.1",
        str(port),
        str(rate),
        str(seconds),
        str(connections),
        str(reqs),
        "1",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=True)
    return json.loads(out.stdout)


def wrk_max(
    url: str, key: str | None, seconds: float, connections: int, body: str | None = None
) -> dict:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", url]
    if key:
        args[1:1] = ["-H", f"X-API-Key: {key}"]
    if body:  # a POST: wrk takes method and body from a Lua script
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        args[1:1] = ["-s", str(script)]
    try:
        text = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        if body:
            script.unlink()
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def latency(pct: str) -> float | None:
        found = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", text)
        return float(found.group(1)) * unit[found.group(2)] if found else None

    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout)\s*:?\s*(\d+)", text)
    )
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors += sum(int(x) for x in socket.groups()[:3]) if socket else 0
    total = re.search(r"(\d+) requests in", text)
    return {
        "throughput": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "completed": int(total.group(1)) if total else None,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "p999_ms": None,
        "errors": errors,
        "non_2xx": None,
    }


def reloads(base: str) -> int:
    """Snapshots the API swapped in so far (from its metrics)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = re.search(r'stock_api_snapshot_loads_total\{result="swapped"\} ([\d.e+]+)', text)
    return int(float(found.group(1))) if found else 0


def settle(seconds: float = 2.0) -> None:
    time.sleep(seconds)  # let a saturated server drain before the next run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-env", type=Path, help="KEY=VALUE file pointing at a built state")
    parser.add_argument("--state-dir", type=Path, help="a STOCK_STATE_DIR (e.g. of `make run`)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per open-loop run")
    parser.add_argument("--rates", default="500,1000,2000,3000")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the fixed-rate runs")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--build-only", action="store_true", help="build the state and stop")
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server)
        return

    work = Path(tempfile.mkdtemp(prefix="api-load-"))
    if args.state_env:
        state = read_env_file(args.state_env)
    elif args.state_dir:
        state = {"STOCK_STATE_DIR": str(args.state_dir.resolve())}
    else:
        built = Path(tempfile.mkdtemp(prefix="api-load-state-"))
        print(f"building a state in {built} (40 tickers, predictions June-July 2010) ...")
        state = build_state(built)
        print(f"kept: reuse it with --state-env {built / 'state.env'}", flush=True)
    if args.build_only:
        return
    tool = work / "openloop"
    subprocess.run(["gcc", "-O2", "-o", str(tool), str(REPO / "bench" / "openloop.c")], check=True)

    secret = "sk_bench_" + secrets.token_urlsafe(24)
    from serving.settings import digest

    api_port, bare_port = free_port(), free_port()
    env = {
        **os.environ,
        **state,
        "STOCK_API_HOST": "127.0.0.1",
        "STOCK_API_PORT": str(api_port),
        "STOCK_API_KEYS": f"bench:{digest(secret)}:1000000:1000000",
    }
    api = start([PYTHON, "-m", "serving"], env, work / "api.log")
    bare = start(
        [PYTHON, __file__, "--bare-server", str(bare_port)], dict(os.environ), work / "bare.log"
    )
    results: list[dict] = []
    try:
        wait_for(f"http://127.0.0.1:{api_port}/health/ready", api, work / "api.log")
        wait_for(f"http://127.0.0.1:{bare_port}/bare", bare, work / "bare.log")
        results = run_all(args, tool, work, secret, api, api_port, bare, bare_port)
    finally:
        stop(api)
        stop(bare)
    report(results, args)
    shutil.rmtree(work, ignore_errors=True)


def run_all(args, tool, work, secret, api, api_port, bare, bare_port) -> list[dict]:
    base = f"http://127.0.0.1:{api_port}"
    ready = httpx.get(f"{base}/health/ready", headers={"X-API-Key": secret}).json()
    listing = httpx.get(f"{base}/v1/tickers", headers={"X-API-Key": secret}).json()
    tickers = [t["ticker"] for t in listing["tickers"]][:50]
    fifty = ",".join(tickers)

    def latest(names: str) -> bytes:
        return raw_request(api_port, f"/v1/predictions/latest?tickers={names}", secret)

    def on_demand(name: str, source: str) -> bytes:
        body = json.dumps({"tickers": [name], "source": source}).encode()
        return raw_request(api_port, "/v1/predictions/on-demand", secret, body)

    files = {
        "floor": request_file(work, "floor", [raw_request(bare_port, "/floor", None)]),
        "bare": request_file(work, "bare", [raw_request(bare_port, "/bare", None)]),
        "latest-1": request_file(work, "latest1", [latest(t) for t in tickers]),
        "latest-50": request_file(work, "latest50", [latest(fifty)]),
        "on-demand cached": request_file(work, "od", [on_demand(t, "cache") for t in tickers]),
        "on-demand cold Feast": request_file(work, "odf", [on_demand(t, "feast") for t in tickers]),
    }
    urls = {
        "floor": f"http://127.0.0.1:{bare_port}/floor",
        "bare": f"http://127.0.0.1:{bare_port}/bare",
        "latest-1": f"{base}/v1/predictions/latest?tickers={tickers[0]}",
        "latest-50": f"{base}/v1/predictions/latest?tickers={fifty}",
    }
    results = []

    def measured(scenario: str, tool_name: str, rate, run, *run_args) -> None:
        """Run, then record the outcome with the server's CPU share over the run and whether
        the API swapped its snapshot meanwhile (a reload costs CPU and collector time)."""
        pid = bare.pid if scenario in ("bare", "floor") else api.pid
        swaps = reloads(base)
        before, started = cpu_seconds(pid), time.monotonic()
        outcome = run(*run_args)
        cpu, wall = cpu_seconds(pid) - before, time.monotonic() - started
        outcome = {"scenario": scenario, "tool": tool_name, "target_rate": rate, **outcome}
        outcome["server_cpu_percent"] = round(100 * cpu / wall, 1)
        outcome["api_reloads"] = reloads(base) - swaps
        outcome["loadavg_1m"] = os.getloadavg()[0]
        results.append(outcome)
        print(json.dumps(outcome), flush=True)
        settle()

    print(f"state: {ready['data_date']}, champion {ready['champion']}, tickers {len(tickers)}")
    for scenario, url in urls.items():  # the maximum, closed loop
        key = None if scenario in ("bare", "floor") else secret
        measured(scenario, "wrk -t1 -c64", "max", wrk_max, url, key, args.duration, 64)
    for _ in range(args.repeat):  # rounds over every scenario, so drift hits each alike
        for scenario in urls:
            port = bare_port if scenario in ("bare", "floor") else api_port
            for rate in (int(r) for r in args.rates.split(",")):
                run = (tool, port, rate, args.duration, files[scenario], args.connections)
                measured(scenario, "openloop", rate, open_loop, *run)
    run = (tool, api_port, 500, args.duration, files["on-demand cached"], args.connections)
    measured("on-demand cached", "openloop", 500, open_loop, *run)
    on_demand_url = f"{base}/v1/predictions/on-demand"
    for scenario, source, connections in (("cached", "cache", 64), ("cold Feast", "feast", 8)):
        body = json.dumps({"tickers": [tickers[0]], "source": source})
        run = (on_demand_url, secret, args.duration, connections, body)
        measured(f"on-demand {scenario}", f"wrk -t1 -c{connections}", "max", wrk_max, *run)
    for rate, seconds in ((20, args.duration), (500, 3.0)):
        run = (tool, api_port, rate, seconds, files["on-demand cold Feast"], args.connections)
        measured("on-demand cold Feast", "openloop", rate, open_loop, *run)
    settle(30)  # the backlog a saturated cold run left drains before the server stops
    return results


def per_request(result: dict) -> float | None:
    """Server CPU time per answered request, in microseconds: steadier than latency on a
    shared machine (other processes stretch latencies, not this process's own CPU time)."""
    if not result["throughput"]:
        return None
    return result["server_cpu_percent"] / 100 / result["throughput"] * 1e6


def tail_ratios(results: list[dict]) -> list[str]:
    """Each round's p99 over the bare endpoint's p99 at the same rate in the same round (the
    rounds run every scenario in turn), and on-demand's over the bare median at its rate."""
    fixed = [r for r in results if r["tool"] == "openloop" and r["p99_ms"]]
    bare: dict[int, list[float]] = {}
    for r in fixed:
        if r["scenario"] == "bare":
            bare.setdefault(r["target_rate"], []).append(r["p99_ms"])
    lines = []
    for scenario in ("latest-1", "latest-50"):
        for rate, denominators in bare.items():
            p99 = [
                r["p99_ms"] for r in fixed if r["scenario"] == scenario and r["target_rate"] == rate
            ]
            ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(p99, denominators, strict=False))
            if ratios:
                lines.append(f"- {scenario} p99 / bare p99 at {rate}/s, per round: {ratios}")
    for r in fixed:
        if r["scenario"] == "on-demand cached" and bare.get(r["target_rate"]):
            rate = r["target_rate"]
            ratio = r["p99_ms"] / statistics.median(bare[rate])
            lines.append(f"- on-demand cached p99 / bare median p99 at {rate}/s: {ratio:.2f}")
    return ["\np99 ratios:", *lines] if lines else []


def report(results: list[dict], args) -> None:
    lines = [
        "| scenario | tool | target req/s | throughput req/s | p50 ms | p99 ms | p99.9 ms | "
        "errors | server CPU % | CPU us/req | load 1 min | reloads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    for r in results:
        errors = (r.get("errors") or 0) + (r.get("non_2xx") or 0)
        lines.append(
            f"| {r['scenario']} | {r['tool']} | {r['target_rate']} | {fmt(r['throughput'], 0)} | "
            f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r.get('p999_ms'))} | {errors} | "
            f"{fmt(r['server_cpu_percent'], 0)} | {fmt(per_request(r), 0)} | "
            f"{r['loadavg_1m']:.1f} | {r['api_reloads']} |"
        )
    if args.repeat > 1:
        lines.append(f"\nmedian p99 ms over {args.repeat} rounds (min-max):")
        fixed = [r for r in results if r["tool"] == "openloop" and r["p99_ms"]]
        for key in dict.fromkeys((r["scenario"], r["target_rate"]) for r in fixed):
            scenario, rate = key
            p99 = [
                r["p99_ms"] for r in fixed if (r["scenario"], r["target_rate"]) == (scenario, rate)
            ]
            lines.append(
                f"- {scenario} at {rate}/s: {statistics.median(p99):.2f} "
                f"({min(p99):.2f}-{max(p99):.2f})"
            )
    lines += tail_ratios(results)
    maxima = {r["scenario"]: r["throughput"] for r in results if r["target_rate"] == "max"}
    if maxima.get("bare"):
        for scenario in ("latest-1", "latest-50"):
            ratio = maxima.get(scenario, 0) / maxima["bare"]
            lines.append(f"\n{scenario} maximum / bare maximum: {ratio:.2f}")
    machine = (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"load average {os.getloadavg()}, Python {platform.python_version()}"
    )
    print("\n" + "\n".join(lines) + "\n\nmachine: " + machine)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
