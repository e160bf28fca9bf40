-- work.sql — the SQLite workload of bench_dropin.sh, run in an in-memory database (every page comes
-- from malloc): `sqlite3 -cmd '.parameter set @n 200000' :memory: < work.sql`. Inserts @n rows
-- through a recursive CTE, indexes them, groups, updates and deletes; every result printed
-- depends only on @n, never on the allocator.
PRAGMA cache_size = -262144;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, score REAL, note TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < @n)
INSERT INTO t(grp, name, score, note)
  SELECT (x * 7919) % 1000,
         printf('name-%08d', (x * 104729) % 1000003),
         ((x * 31) % 997) / 7.0,
         substr('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod', 1 + x % 40, 10 + x % 30)
  FROM c;
CREATE INDEX t_name ON t(name);
SELECT count(*), count(DISTINCT name), sum(length(note)) FROM t;
SELECT grp, count(*), round(sum(score), 3), min(name), max(name) FROM t GROUP BY grp ORDER BY count(*) DESC, grp LIMIT 5;
SELECT note, count(*) FROM t GROUP BY note ORDER BY 2 DESC, 1 LIMIT 3;
UPDATE t SET note = note || '-' || grp WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
SELECT count(*), sum(length(note)), max(name) FROM t;
SELECT group_concat(name, ',') IS NOT NULL, length(group_concat(name, ',')) FROM (SELECT name FROM t ORDER BY name LIMIT 20000);
