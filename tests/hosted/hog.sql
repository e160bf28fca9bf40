-- hog.sql: a table larger than any small budget (hostmem host sqlite tests)
CREATE TABLE big AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000)
SELECT x, randomblob(1000) AS b FROM c;
