-- wrk reporter: after wrk's own report, prints one machine-readable line
--   RESULT <requests> <duration µs> <p50 µs> <p99 µs> <non-2xx/3xx> <socket errors>
-- from the same latency histogram that `--latency` prints, so the script needs no
-- parsing of "1.23ms"-style text.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.0f %.0f %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
