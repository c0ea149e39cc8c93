-- POSTs pre-built request bodies in turn and prints the run's figures as one JSON line.
-- Arguments after `--`: the Content-Type header, then one or more files holding bodies.
-- Used by bench/serve_bench.py: wrk -s bench/wrk/post_bodies.lua URL -- TYPE FILE...

local requests = {}
local next_request = 1
local threads_made = 0

-- Runs in the main state: gives each thread a different first body.
function setup(thread)
  threads_made = threads_made + 1
  thread:set("first_request", threads_made)
end

local function read_file(path)
  local handle = assert(io.open(path, "rb"), "cannot open body file " .. path)
  local data = handle:read("*a")
  handle:close()
  return data
end

function init(args)
  assert(#args >= 2, "usage: -- CONTENT-TYPE BODY-FILE [BODY-FILE...]")
  local headers = { ["Content-Type"] = args[1] }
  for i = 2, #args do
    requests[#requests + 1] = wrk.format("POST", nil, headers, read_file(args[i]))
  end
  next_request = ((first_request or 1) - 1) % #requests + 1
end

function request()
  local chosen = requests[next_request]
  next_request = next_request % #requests + 1
  return chosen
end

function done(summary, latency, requests_)
  local errors = summary.errors
  local fields = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"bytes": %d', summary.bytes),
    string.format('"errors_connect": %d', errors.connect),
    string.format('"errors_read": %d', errors.read),
    string.format('"errors_write": %d', errors.write),
    string.format('"errors_status": %d', errors.status),
    string.format('"errors_timeout": %d', errors.timeout),
    string.format('"latency_mean_us": %.1f', latency.mean),
    string.format('"latency_max_us": %d', latency.max),
  }
  for _, p in ipairs({ 50, 90, 99 }) do
    fields[#fields + 1] = string.format('"latency_p%d_us": %d', p, latency:percentile(p))
  end
  io.write("WRK_JSON {" .. table.concat(fields, ", ") .. "}\n")
end
