-- wrk script: POST visitor turns to 10,000 conversations, round-robin. Each wrk thread has its
-- own 5,000 (as with real visitors, a conversation gets one turn at a time). Without TURNS the
-- conversations grow without end; with TURNS=N each gets N turns and is then replaced by a new
-- one, so the live set stays the same size however long the run.
-- Usage (see BENCHMARKS.md): KEY=... [TURNS=20] wrk -t2 -c64 -d20s -s bench/turns.lua http://127.0.0.1:8080
local key = os.getenv("KEY")
local turns = tonumber(os.getenv("TURNS") or "")
local live = 5000
local texts = {
  "Hi, do you integrate with HubSpot?",
  "How much does the team plan cost for 25 people?",
  "ok thanks",
  "Can you send me the docs for the API?",
}
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
request = function()
  n = n + 1
  local id = "load-" .. tostring(tid) .. "-" .. (n % live)
  if turns then
    id = id .. "-" .. math.floor(n / (live * turns))
  end
  local body = '{"role": "user", "text": "' .. texts[(n % #texts) + 1] .. '"}'
  return wrk.format("POST", "/v1/conversations/" .. id .. "/turns",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
