-- wrk script: visitor turns to conversations that end. Each wrk thread keeps 5,000 conversations
-- going, round-robin; a conversation gets TURNS turns (default 20) and is then replaced by a new
-- one, so the set of live conversations stays the same size however long the run (bench/turns.lua's
-- conversations grow without end). Usage (see BENCHMARKS.md):
--   KEY=... wrk -t2 -c64 -d60s -s bench/conversations.lua http://127.0.0.1:8080
local key = os.getenv("KEY")
local turns = tonumber(os.getenv("TURNS") or "20")
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
  local slot = n % live
  local generation = math.floor(n / (live * turns))
  local id = "conv-" .. tostring(tid) .. "-" .. slot .. "-" .. generation
  local body = '{"role": "user", "text": "' .. texts[(n % #texts) + 1] .. '"}'
  return wrk.format("POST", "/v1/conversations/" .. id .. "/turns",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
