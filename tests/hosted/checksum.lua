-- checksum.lua: tables and strings, a third of them garbage; prints a checksum (hostmem host lua tests)
local n = tonumber(arg[1]) or 20000
local t, h = {}, 0
for i = 1, n do
  local s = string.format('%d:%s', i, string.rep(string.char(65 + i % 26), i % 50))
  t[#t + 1] = {s = s, i = i, sub = {i * 2, s:upper()}}
  if i % 3 == 0 then t[#t] = nil end
  for k = 1, #s, 7 do h = (h * 31 + s:byte(k)) % 4294967296 end
end
print(#t, h, select('#', ...))
