-- wrk script: the same POST on every request, body and headers from files the runner wrote
-- (files rather than Lua literals, so no escaping of a signature or a JSON body can go wrong).
-- done() prints one machine-readable line: exact counts and microsecond percentiles, where the
-- human summary above it rounds and switches units.

local function read(path)
  local file = assert(io.open(path, "rb"), "cannot open " .. path)
  local text = file:read("*a")
  file:close()
  return text
end

wrk.method = "POST"
wrk.body = read(os.getenv("BENCH_WRK_BODY_FILE"))
for line in io.lines(os.getenv("BENCH_WRK_HEADERS_FILE")) do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"http_error":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
