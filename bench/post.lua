-- wrk script for bench/run.sh: POST one non-streaming chat completion per request.
-- The bench key comes from the BENCH_KEY environment variable (run.sh generates one per run).
wrk.method = "POST"
wrk.body   = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}],"max_tokens":16}'
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
