DROP INDEX messages_room_id;
DROP TABLE messages;
