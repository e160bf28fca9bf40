-- queries.sql: tables, an index, joins, sorts, aggregates (hostmem host sqlite tests)
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, price REAL, tag BLOB);
CREATE TABLE sale(id INTEGER PRIMARY KEY, item INTEGER REFERENCES item(id), qty INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000)
INSERT INTO item SELECT x, 'item-' || (x * 7919 % 3001), (x % 97) / 4.0, CASE WHEN x % 5 THEN NULL ELSE x'00ff' END FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 9000)
INSERT INTO sale SELECT x, 1 + (x * 31 % 3000), x % 13 FROM c;
CREATE INDEX sale_item ON sale(item);
SELECT count(*), sum(qty), avg(price) FROM sale JOIN item ON item.id = sale.item;
SELECT name, sum(qty) AS n FROM sale JOIN item ON item.id = sale.item GROUP BY name ORDER BY n DESC, name LIMIT 5;
SELECT id, name, price, hex(tag) FROM item WHERE price > 23 ORDER BY name LIMIT 4;
SELECT group_concat(name, ',') FROM (SELECT name FROM item ORDER BY price, name LIMIT 6);
UPDATE item SET price = price * 2 WHERE id % 3 = 0;
DELETE FROM sale WHERE qty = 0;
SELECT count(*), total(price), 1.5, NULL, 'a|b' FROM sale JOIN item ON item.id = sale.item;
PRAGMA integrity_check;
