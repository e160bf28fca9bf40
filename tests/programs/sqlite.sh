#!/bin/bash
# sqlite.sh — sqlite3 (Debian's shell) runs an SQL workload on glibc and on the drop-in: tables filled
# with 50 000 rows by a recursive CTE, indexes, joins, GROUP BY, ORDER BY, window functions, updates
# and deletes, a JSON aggregate, VACUUM of a database file, then an in-memory database with a large
# page cache; the output must be equal.
. "$(dirname "$0")/common.sh" "$@"
SQLITE=/usr/bin/sqlite3
need $SQLITE

cat >"$WORK/workload.sql" <<'SQL'
.bail on
.headers on
.mode list
PRAGMA cache_size = -20000;
PRAGMA journal_mode = TRUNCATE;
CREATE TABLE customer(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, score REAL);
CREATE TABLE item(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customer(id), sku TEXT,
                  qty INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO customer SELECT i, 'customer-' || printf('%05d', i), 'city-' || (i * 7 % 97), (i * 37 % 1000) / 10.0 FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO item SELECT i, 1 + (i * 7919 % 5000), 'sku-' || hex(i * 31 % 65536), 1 + i % 9, (i % 1000) / 7.0,
                        substr(replace(hex(zeroblob(1 + i % 120)), '0', 'ab'), 1, 1 + i % 200) FROM n;
CREATE INDEX item_customer ON item(customer);
CREATE INDEX item_sku ON item(sku, qty);
CREATE INDEX customer_city ON customer(city, score DESC);
SELECT count(*), sum(qty), round(sum(qty * price), 2), sum(length(note)) FROM item;
SELECT c.city, count(DISTINCT c.id) AS customers, count(i.id) AS items, round(sum(i.qty * i.price), 2) AS total
  FROM customer c JOIN item i ON i.customer = c.id GROUP BY c.city ORDER BY total DESC, c.city LIMIT 15;
SELECT name, total, rank FROM (
  SELECT c.name, round(sum(i.qty * i.price), 2) AS total,
         rank() OVER (PARTITION BY c.city ORDER BY sum(i.qty * i.price) DESC, c.id) AS rank
    FROM customer c JOIN item i ON i.customer = c.id GROUP BY c.id) WHERE rank <= 1 ORDER BY total DESC LIMIT 10;
SELECT sku, count(*), max(qty) FROM item WHERE sku LIKE 'sku-1%' GROUP BY sku HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT 10;
SELECT group_concat(name, ',') FROM (SELECT name FROM customer WHERE score > 99 ORDER BY name);
SELECT json_group_array(json_object('id', id, 'q', qty)) FROM (SELECT id, qty FROM item WHERE id % 5000 = 0);
UPDATE item SET price = price * 1.1, note = note || '-upd' WHERE qty = 3;
DELETE FROM item WHERE id % 7 = 0;
DELETE FROM customer WHERE id NOT IN (SELECT customer FROM item);
SELECT count(*), round(sum(price), 2), sum(length(note)) FROM item;
SELECT count(*) FROM customer;
SELECT c.id, count(*) FROM customer c LEFT JOIN item i ON i.customer = c.id GROUP BY c.id ORDER BY 2 DESC, 1 LIMIT 5;
CREATE TEMP TABLE words AS WITH RECURSIVE w(i, s) AS (SELECT 1, 'a' UNION ALL SELECT i + 1, s || char(97 + i % 26) FROM w WHERE i < 2000) SELECT i, s FROM w;
SELECT count(*), sum(length(s)), max(s) = (SELECT s FROM words WHERE i = 2000) FROM words;
SELECT substr(s, -10) FROM words ORDER BY i DESC LIMIT 3;
VACUUM;
PRAGMA integrity_check;
SELECT count(*), sum(qty) FROM item INDEXED BY item_sku WHERE sku > 'sku-38';
ATTACH ':memory:' AS mem;
CREATE TABLE mem.t(k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
INSERT INTO mem.t SELECT printf('%08d', i * 7 % 30011), zeroblob(i % 500) FROM n;
SELECT count(*), sum(length(v)), min(k), max(k) FROM mem.t;
SELECT k FROM mem.t ORDER BY length(v) DESC, k LIMIT 3;
SQL

cd "$WORK" || fail "cd $WORK"
# A fresh database file for each run: made by the glibc run, removed, made again by the drop-in's.
cat >"$WORK/run.sh" <<'SH'
#!/bin/sh
rm -f "$1/db" "$1/db-journal"
exec "$2" "$1/db" <"$1/workload.sql"
SH
chmod +x "$WORK/run.sh"
compare sqlite "$WORK/run.sh" "$WORK" $SQLITE
