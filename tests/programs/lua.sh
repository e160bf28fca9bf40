#!/bin/bash
# lua.sh — Lua 5.4 (Debian's lua5.4, whose allocator is realloc/free) runs a script on glibc and on
# the drop-in: tables as arrays and hashes, string building, closures, coroutines, metatables,
# collectgarbage (incremental and generational), string.format; the output must be equal.
. "$(dirname "$0")/common.sh" "$@"
LUA=/usr/bin/lua5.4
need $LUA

cat >"$WORK/workload.lua" <<'LUA'
local function checksum(s)
  local h = 0
  for i = 1, #s do h = (h * 31 + s:byte(i)) % 4294967296 end
  return h
end

-- tables: arrays, hashes, removal, nesting
local t = {}
for i = 1, 200000 do t[i] = i * 2 end
for i = #t, #t - 3000, -3 do table.remove(t, i) end
for i = 1, 50 do table.remove(t, 1) end
for i = 1, 50000 do t[#t] = nil end
local h = {}
for i = 1, 100000 do h["key" .. i] = {i, tostring(i), i % 7 == 0} end
for i = 1, 100000, 2 do h["key" .. i] = nil end
local n = 0
for _ in pairs(h) do n = n + 1 end
print("tables", #t, t[1], t[#t], n, h.key100[2])
table.sort(t, function(a, b) return a % 1000 < b % 1000 or (a % 1000 == b % 1000 and a < b) end)
print("sort", t[1], t[2], t[#t])
local nested = {}
for i = 1, 2000 do
  nested[i] = {}
  for j = 1, i % 50 do nested[i][j] = {j, {j * 2}} end
end
local cnt = 0
for i = 1, #nested do cnt = cnt + #nested[i] end
print("nested", cnt)

-- strings: concatenation, table.concat, gsub, rep, find
local parts = {}
for i = 1, 50000 do parts[#parts + 1] = string.format("%05d:%x:%.3f", i, i * 17, i / 7) end
local big = table.concat(parts, ";")
print("concat", #big, checksum(big))
local s = ""
for i = 1, 3000 do s = s .. string.char(65 + i % 26) end
print("grow", #s, s:sub(-10))
local replaced, count = big:gsub("(%d+):", function(d) return "<" .. #d .. ">" end)
print("gsub", #replaced, count, checksum(replaced))
print("rep", #string.rep("abc", 100000, ","), ("x"):rep(10))
local words = 0
for w in big:gmatch("[^;]+") do words = words + 1 end
print("gmatch", words, big:find("12345:", 1, true))
print("format", string.format("%q %5.2f %-6s| %d %g", "a\nb", math.pi, "ab", 2^40, 1e300))
print("utf8", utf8.len("héllo wörld ☃"), utf8.char(9731, 233))

-- closures
local function counter(start)
  local c = start
  return function(step) c = c + (step or 1); return c end
end
local counters = {}
for i = 1, 10000 do counters[i] = counter(i) end
local total = 0
for round = 1, 5 do
  for i = 1, #counters do total = total + counters[i](round) end
end
print("closures", total)
local function compose(f, g) return function(...) return f(g(...)) end end
local f = function(x) return x end
for i = 1, 200 do local k = i; f = compose(function(x) return x + k end, f) end
print("compose", f(0))

-- coroutines
local function gen(nmax)
  return coroutine.wrap(function()
    for i = 1, nmax do coroutine.yield(i * i) end
  end)
end
local sum = 0
for v in gen(100000) do sum = sum + v end
print("coroutine", sum)
local cos = {}
for i = 1, 2000 do
  cos[i] = coroutine.create(function(a)
    local acc = {}
    while true do acc[#acc + 1] = a; a = coroutine.yield(#acc) end
  end)
end
local r = 0
for step = 1, 20 do
  for i = 1, #cos do local ok, v = coroutine.resume(cos[i], step); r = r + v end
end
print("coroutines", r, coroutine.status(cos[1]))
cos = nil

-- metatables and a class
local Vec = {}
Vec.__index = Vec
Vec.__add = function(a, b) return Vec.new(a.x + b.x, a.y + b.y) end
Vec.__tostring = function(v) return "(" .. v.x .. "," .. v.y .. ")" end
function Vec.new(x, y) return setmetatable({x = x, y = y}, Vec) end
function Vec:len2() return self.x * self.x + self.y * self.y end
local acc = Vec.new(0, 0)
for i = 1, 100000 do acc = acc + Vec.new(i, -i) end
print("vec", tostring(acc), acc:len2())
local weak = setmetatable({}, {__mode = "k"})
for i = 1, 1000 do weak[{}] = i end

-- the collector: full cycles, steps, generational mode, finalizers
collectgarbage("collect")
local finalized = 0
for round = 1, 5 do
  local garbage = {}
  for i = 1, 20000 do
    garbage[i] = setmetatable({i, tostring(i), {}}, {__gc = (i % 100 == 0) and function() finalized = finalized + 1 end or nil})
    garbage[i][3].back = garbage[i]
  end
  garbage = nil
  collectgarbage("collect")
  collectgarbage("step", 100)
end
collectgarbage("collect")
local left = 0
for _ in pairs(weak) do left = left + 1 end
print("gc", finalized, left)
collectgarbage("generational")
local keep = {}
for i = 1, 100000 do
  local tmp = {i, i + 1}
  if i % 10 == 0 then keep[#keep + 1] = tmp end
end
collectgarbage("incremental")
collectgarbage("collect")
print("generational", #keep)
print("done")
LUA

cd "$WORK" || fail "cd $WORK"
compare lua $LUA "$WORK/workload.lua"
