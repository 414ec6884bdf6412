-- Bumped by every change to routing state (router steps, reps, presences). A node that shares
-- the database with others compares it with the count it knows of to tell that its copy of
-- the routing state in memory is behind.
CREATE TABLE routing_version (id INTEGER PRIMARY KEY, version BIGINT NOT NULL);
INSERT INTO routing_version (id, version) VALUES (1, 0);
