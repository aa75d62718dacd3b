-- wrk script: POST the JSON body in $BENCH_BODY (with $BENCH_AUTH as a Bearer key, if set) and
-- print one machine-readable summary line, "BENCH_JSON {...}", for bench/run.py.
-- A stream counts as one request: wrk reads the chunked answer to its end, so requests/s of a
-- streaming body is streams/s, and its latency is the whole stream's duration.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
-- $BENCH_AUTH may list several keys separated by commas (bench/run.py --accounts N): requests
-- then take them in turn, so the load spreads over that many accounts.
local keys = {}
for key in string.gmatch(os.getenv("BENCH_AUTH") or "", "[^,]+") do
  keys[#keys + 1] = key
end
if #keys == 1 then
  wrk.headers["Authorization"] = "Bearer " .. keys[1]
elseif #keys > 1 then
  local turn = 0
  function request()
    turn = turn % #keys + 1
    wrk.headers["Authorization"] = "Bearer " .. keys[turn]
    return wrk.format()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
