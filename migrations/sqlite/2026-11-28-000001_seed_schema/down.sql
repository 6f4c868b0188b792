DROP TABLE queue;
DROP TABLE schedule;
DROP TABLE channel;
