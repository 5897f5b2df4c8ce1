-- wrk script for the authenticated cases: every request carries the next token of a file
-- of many users' tokens (path in the TOKENS environment variable), so a proxy that caches
-- verified tokens sees a realistic mix: each token is new once, then seen again, as with
-- clients reusing an access token for its lifetime. Each wrk thread starts at another
-- offset. Reports like report.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local tokens = {}
local index = 0

function init(args)
  for line in io.lines(os.getenv("TOKENS")) do
    tokens[#tokens + 1] = "Bearer " .. line
  end
  assert(#tokens > 0, "no tokens in " .. os.getenv("TOKENS"))
  index = (id or 0) * 7919 % #tokens
end

function setup(thread)
  thread:set("id", setup_count or 0)
  setup_count = (setup_count or 0) + 1
end

function request()
  index = index % #tokens + 1
  return wrk.format(nil, nil, { Authorization = tokens[index] })
end
