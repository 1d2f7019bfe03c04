DROP TABLE presence;
DROP TABLE nodes;
DROP TABLE write_check;
DROP TABLE messages;
DROP TABLE rooms;
