-- POST /jobs: BENCH_BODY as the JSON body; with BENCH_TOKEN, a bearer token and a fresh
-- Idempotency-Key per request (BENCH_RUN keeps keys apart between runs).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
local token = os.getenv("BENCH_TOKEN")
local body = os.getenv("BENCH_BODY")
local run = os.getenv("BENCH_RUN") or "run"
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local counter = 0
request = function()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json"}
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
    headers["Idempotency-Key"] = run .. "-" .. id .. "-" .. counter
  end
  return wrk.format("POST", "/jobs", headers, body)
end
done = function(summary, latency, requests) report(summary, latency) end
