-- wrk script: POST an Azure DevOps "work item created" service hook with a unique id per request
-- (the delivery id dataflows deduplicates on), and print a JSON summary line at the end.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic YmVuY2g6c2VjcmV0" -- bench:secret

local counter = 0
local prefix = "wrk"

-- args[1]: a prefix unique to this wrk run (Lua's random numbers repeat from run to run);
-- the table address tells this thread's requests from other threads'.
function init(args)
   prefix = (args[1] or "wrk") .. "-" .. tostring({}):sub(8)
end

function request()
   counter = counter + 1
   local body = string.format(
      '{"id":"%s-%d","eventType":"workitem.created","resource":{"id":%d,"fields":{"System.Title":"bench"}}}',
      prefix, counter, counter)
   return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"non_2xx_3xx":%d,"connect_errors":%d,' ..
      '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
